"""Pipeline parallelism: layers cut into stages, micro-batches flowing through them.

`bubble_fraction` is the textbook formula (Narayanan et al. 2021): (p-1)/m for GPipe and
1F1B, (p-1)/(v m) for interleaved 1F1B. `pipeline_schedule` does not use it: it simulates
GPipe, 1F1B, interleaved 1F1B, a zero-bubble (ZB-H1) schedule and DeepSeek-V3's
bidirectional DualPipe from per-op costs and returns every rank's timeline, and the
bubble is measured off that timeline, with its peak number of in-flight micro-batches.
"""
from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field

from llminfra_lab.checks import positive_int, positive_number

__all__ = ["PipelineOp", "PipelineSchedule", "pipeline_schedule", "SCHEDULES", "bubble_fraction"]


def bubble_fraction(name: str, p: int, m: int, v: int = 1) -> float:
    """Bubble time over ideal time of schedule `name` with p stages, m micro-batches, v chunks.

    Each of the p stages idles while the pipeline fills and drains: (p-1) forward and
    backward slots, against the m slots of useful work. Interleaving v chunks per rank
    makes each slot v times shorter. Equal-cost micro-batches, free hand-offs:

        "gpipe", "1f1b":   (p - 1) / m          (1F1B changes the memory, not the bubble)
        "interleaved":     (p - 1) / (v m)
    """
    if name not in ("gpipe", "1f1b", "interleaved"):
        raise KeyError(f"unknown schedule {name!r} for the formula; valid: 'gpipe', '1f1b', 'interleaved'")
    for label, value in (("p", p), ("m", m), ("v", v)):
        positive_int(label, value)
    if name != "interleaved" and v != 1:
        raise ValueError(f"v (model chunks per rank) applies to 'interleaved' only; got v={v} for {name!r}")
    return (p - 1) / (v * m)


@dataclass(frozen=True)
class PipelineOp:
    """One unit of pipeline work on one rank.

    kind: "F" forward, "B" backward (input gradient; the whole backward unless the
    schedule splits off "W"), "W" weight gradient. stage: virtual stage 0..p*v-1
    (rank = stage % p), except for "dualpipe", whose micro-batches 0..m/2-1 run stage s
    on rank s and micro-batches m/2..m-1 run it on rank p-1-s. start/end in the unit of
    the op costs. overlapped: the op belongs to a DualPipe "F&B" unit (a forward of one
    direction and a whole backward B + W of the other, run as one unit of cost t_fb; the
    three ops are recorded back to back inside it and their results count as ready at
    the unit's end).
    """
    kind: str
    microbatch: int
    stage: int
    rank: int
    start: float
    end: float
    overlapped: bool = False


@dataclass
class PipelineSchedule:
    """A simulated pipeline schedule: every op with its times, plus the derived measures.

    bubble_fraction = (makespan - busy) / busy averaged over ranks, where busy is a rank's
    total compute time: Narayanan et al.'s "bubble time / ideal time".
    peak_inflight[r]: the most micro-batches whose activations rank r held at once (a
    micro-batch counts from its forward's start until its backward "B" ends; with
    interleaving, each chunk counts 1/v; with DualPipe each of a rank's two stages counts
    1, as in the DualPipe README's "activation per device").
    params_per_rank[r]: the model parameters rank r holds, counted from the ops as the
    number of distinct stages it runs divided by v, in units of one 1F1B stage (L/p
    layers): 1 for every schedule except DualPipe, 2.
    """
    name: str
    p: int
    m: int
    v: int
    costs: dict
    ops: list[PipelineOp] = field(repr=False)
    makespan: float = 0.0
    busy: list[float] = field(default_factory=list)
    bubble_fraction: float = 0.0
    peak_inflight: list[float] = field(default_factory=list)
    params_per_rank: list[float] = field(default_factory=list)

    def rank_ops(self, rank: int) -> list[PipelineOp]:
        """Rank `rank`'s ops in time order."""
        if not 0 <= rank < self.p:
            raise ValueError(f"rank must be in [0, {self.p}), got {rank!r}")
        return sorted((o for o in self.ops if o.rank == rank), key=lambda o: o.start)


SCHEDULES = ("gpipe", "1f1b", "interleaved", "zb-h1", "dualpipe")


def pipeline_schedule(name: str, p: int, m: int, v: int = 1, *, t_f: float = 1.0, t_b: float = 2.0,
                      t_w: float | None = None, t_comm: float = 0.0,
                      t_fb: float | None = None) -> PipelineSchedule:
    """Simulate pipeline schedule `name` on p stages (ranks) with m micro-batches.

    name: "gpipe" (all forwards, then all backwards; Huang et al. 2019), "1f1b"
    (PipeDream-Flush: warm-up forwards then one forward / one backward; Narayanan et
    al. 2021), "interleaved" (1F1B over v model chunks per rank; needs m % p == 0),
    "zb-h1" (zero-bubble ZB-H1, Qi et al. 2024: backward split into B (input grad) and W
    (weight grad); W ops are deferred into what would be bubbles, with 1F1B's limit on
    in-flight micro-batches; see `_zb_h1_policy`), "dualpipe" (DeepSeek-V3's
    bidirectional schedule; see `_dualpipe_order`): m/2 micro-batches enter at rank 0 and
    m/2 at rank p-1, each rank holds stage r for the first direction and stage p-1-r for
    the second (twice the parameters), the backward is split into B and W, and a forward
    of one direction is paired with a whole backward of the other. Needs p even, m even
    and m >= 2p, as DeepSeek's implementation asserts; m counts both directions. Against
    the DualPipe README's bubble (PP/2-1)(F&B+B-3W): with t_f = t_b - t_w = t_w the idle time of
    the rank that waits most equals it for any t_fb (every rank's, when t_fb = t_f + t_b);
    with other costs this simulation differs from the formula in both directions (p=8,
    t_f=1, t_b=2, t_w=0.5: 9 against 10.5; t_f=1, t_b=1, t_w=0.5, t_fb=2: 6 against 4.5).
    Peak in-flight is PP+1 and parameters 2x on every rank, as the README's table says.
    Not modelled: the all-to-all that F&B hides, and the reference's blocking batched sends.
    Costs are per micro-batch for a rank's whole share of layers: t_f forward, t_b the
    full backward. t_w is the part of t_b that is the weight gradient (default t_b/2);
    zb-h1 and dualpipe split it off (B then costs t_b - t_w). With interleaving each chunk
    op costs 1/v of that. t_comm delays each stage-to-stage hand-off. t_fb (dualpipe
    only) is the cost of one overlapped "F&B" unit, between max(t_f, t_b) and t_f + t_b;
    the default t_f + t_b means overlap saves no compute time: this simulator has no
    all-to-all to hide, so any gain has to be given through t_fb.
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in SCHEDULES:
        raise KeyError(f"unknown schedule {name!r}; valid names: {', '.join(SCHEDULES)}")
    for label, value in (("p", p), ("m", m), ("v", v)):
        positive_int(f"{label}", value)
    if t_w is None:
        t_w = t_b / 2
    positive_number("t_f", t_f)
    positive_number("t_b", t_b)
    if not (isinstance(t_w, (int, float)) and 0 < t_w < t_b):
        raise ValueError(f"t_w must be a number in (0, t_b) = (0, {t_b}), got {t_w!r}")
    if t_comm != 0:
        positive_number("t_comm", t_comm)
    if key != "interleaved" and v != 1:
        raise ValueError(f"v (virtual stages per rank) applies to 'interleaved' only; got v={v} for {name!r}")
    if key == "interleaved" and v < 2:
        raise ValueError(f"interleaved 1F1B needs v >= 2 model chunks per rank (v=1 is plain '1f1b'), got v={v}")
    if key == "interleaved" and m % p:
        raise ValueError(f"interleaved 1F1B needs m divisible by p (Megatron's rule); got m={m}, p={p}")
    if key == "dualpipe" and (p % 2 or m % 2 or m < 2 * p):
        raise ValueError(f"dualpipe needs an even p, an even m (both directions) and m >= 2p; got p={p}, m={m}")
    if t_fb is not None and key != "dualpipe":
        raise ValueError(f"t_fb (cost of an overlapped F&B unit) applies to 'dualpipe' only; got it for {name!r}")
    if t_fb is None:
        t_fb = t_f + t_b
    if not (isinstance(t_fb, (int, float)) and max(t_f, t_b) <= t_fb <= t_f + t_b):
        raise ValueError(f"t_fb must be a number in [max(t_f, t_b), t_f + t_b] = [{max(t_f, t_b)}, {t_f + t_b}], "
                         f"got {t_fb!r}")

    split = key in ("zb-h1", "dualpipe")
    cost = {"F": t_f / v, "B": (t_b - t_w if split else t_b) / v, "W": t_w / v, "F&B": t_fb}
    if key == "zb-h1":
        ops = _simulate(p, 1, m, cost, t_comm, policy=_zb_h1_policy(p, m))
    elif key == "dualpipe":
        ops = _simulate_units(p, cost, t_comm, [_dualpipe_order(r, p, m) for r in range(p)])
    else:
        orders = {"gpipe": _gpipe_order, "1f1b": _one_f_one_b_order, "interleaved": _interleaved_order}[key]
        ops = _simulate(p, v, m, cost, t_comm, orders=[orders(r, p, m, v) for r in range(p)])
    makespan = max(o.end for o in ops)
    busy = [sum(o.end - o.start for o in ops if o.rank == r) for r in range(p)]
    bubble = sum((makespan - b) / b for b in busy) / p
    peak = [_peak_inflight([o for o in ops if o.rank == r], v) for r in range(p)]
    params = [len({o.stage for o in ops if o.rank == r}) / v for r in range(p)]
    costs = dict(t_f=t_f, t_b=t_b, t_w=t_w, t_comm=t_comm)
    if key == "dualpipe":
        costs["t_fb"] = t_fb
    return PipelineSchedule(name=key, p=p, m=m, v=v, costs=costs, ops=ops, makespan=makespan, busy=busy,
                            bubble_fraction=bubble, peak_inflight=peak, params_per_rank=params)


# --- per-rank orders (each a list of (kind, microbatch, stage))

def _gpipe_order(r, p, m, v):
    return [("F", i, r) for i in range(m)] + [("B", i, r) for i in range(m)]


def _one_f_one_b_order(r, p, m, v):
    warmup = min(p - r - 1, m)
    order = [("F", i, r) for i in range(warmup)]
    f, b = warmup, 0
    while f < m:                      # steady state: one forward, one backward
        order += [("F", f, r), ("B", b, r)]
        f, b = f + 1, b + 1
    order += [("B", i, r) for i in range(b, m)]
    return order


def _interleaved_order(r, p, m, v):
    """Megatron-LM's interleaved 1F1B: forwards go through chunks 0..v-1 in groups of p micro-batches."""
    total = m * v

    def op(k, forward):
        in_group = k % (p * v)
        chunk = in_group // p
        if not forward:
            chunk = v - 1 - chunk
        mb = (k // (p * v)) * p + k % p
        return ("F" if forward else "B", mb, chunk * p + r)

    warmup = min((p - r - 1) * 2 + (v - 1) * p, total)
    order = [op(k, True) for k in range(warmup)]
    for k in range(total - warmup):
        order += [op(warmup + k, True), op(k, False)]
    order += [op(k, False) for k in range(total - warmup, total)]
    return order


def _zb_h1_policy(p, m):
    """Greedy zero-bubble schedule in the spirit of ZB-H1. A ready B first (it is on the
    critical path). At most p - 1 weight-gradient ops (W) may wait on a rank; below that,
    the next F goes first while fewer than p - r micro-batches are in flight (1F1B's
    limit), else a waiting W fills what would be a bubble. With F, B and W of equal cost
    its bubble is ZB-H1's, (p-1)(F+B-2W) with B the full backward."""

    def pick(r, ready, state):
        bs = [o for o in ready if o[0] == "B"]
        if bs:
            return min(bs, key=lambda o: o[1])
        ws = sorted((o for o in ready if o[0] == "W"), key=lambda o: o[1])
        if len(ws) > p - 1:
            return ws[0]
        fs = [o for o in ready if o[0] == "F"]
        if fs and state["inflight"][r] < p - r:
            return min(fs, key=lambda o: o[1])
        return ws[0] if ws else None

    return pick


def _dualpipe_order(r, p, m):
    """Rank r's work in DualPipe order, as a list of units (tuples of (kind, microbatch, stage)).

    Transcribes the eight steps of DeepSeek's reference schedule (deepseek-ai/DualPipe,
    `DualPipe.step`). Phase 0 is the direction in which rank r sits in the first half of
    the pipeline, phase 1 the other; h = min(r, p-1-r), H = p/2, n = m/2 per direction:
    1. 2(H-h-1) forwards of phase 0;            2. h+1 pairs F0, F1;
    3. H-h-1 times B1 (W deferred), W, F1;      4. n-p+h+1 times F0&B1, F1&B0 (overlapped);
    5. H-h-1 times B1, F1&B0;                   6. h+1 times B1, B0 (W deferred in the second half);
    7. H-h-1 times W, B0 (W deferred);          8. h+1 deferred W.
    A unit of one op costs that op; an overlapped unit (F, B, W) costs t_fb, because the
    reference's overlapped backward is a whole one. A backward whose W is not deferred
    runs B then W at once. Deferred W ops run oldest first. On the two middle ranks the
    first step-4 pair is not overlapped, as in the reference ("to further reduce bubble").
    """
    half, n, h = p // 2, m // 2, min(r, p - 1 - r)
    second, middle = r >= half, h == half - 1
    taken = {"F": [0, 0], "B": [0, 0]}
    deferred: list[tuple] = []
    order: list[tuple] = []

    def take(kind, phase):
        d = phase ^ second                         # direction 0 enters at rank 0, 1 at rank p-1
        k = taken[kind][phase]
        taken[kind][phase] += 1
        return (kind, d * n + k, r if d == 0 else p - 1 - r)

    def forward(phase):
        order.append((take("F", phase),))

    def backward(phase, defer_w=False):
        b = take("B", phase)
        order.append((b,))
        (deferred.append if defer_w else lambda w: order.append((w,)))(("W",) + b[1:])

    def weight():
        order.append((deferred.pop(0),))

    def overlapped(f_phase, b_phase):
        f, b = take("F", f_phase), take("B", b_phase)
        order.append((f, b, ("W",) + b[1:]))

    for _ in range(2 * (half - h - 1)):                  # 1
        forward(0)
    for _ in range(h + 1):                               # 2
        forward(0)
        forward(1)
    for _ in range(half - h - 1):                        # 3
        backward(1, defer_w=True)
        weight()
        forward(1)
    for i in range(n - p + h + 1):                       # 4
        if i == 0 and middle:
            forward(0)
            backward(1)
        else:
            overlapped(0, 1)
        overlapped(1, 0)
    for _ in range(half - h - 1):                        # 5
        backward(1)
        overlapped(1, 0)
    defer = False
    for i in range(h + 1):                               # 6
        if i == (h + 1) // 2 and h % 2 == 1:
            defer = True
        backward(1, defer)
        if i == (h + 1) // 2 and h % 2 == 0:
            defer = True
        backward(0, defer)
    for _ in range(half - h - 1):                        # 7
        weight()
        backward(0, defer_w=True)
    for _ in range(h + 1):                               # 8
        weight()
    return order


def _simulate_units(p, cost, t_comm, orders) -> list[PipelineOp]:
    """Run each rank's units strictly in order: a unit starts when its rank is free and
    every dependency outside the unit has finished (plus t_comm across a hand-off). A
    unit of three ops (F, B, W) is an overlapped F&B of cost cost["F&B"]: its ops are
    recorded back to back in proportion to their own costs, and all three results are
    ready only when the unit ends (the reference sends both after the pair)."""
    end: dict[tuple, float] = {}
    free = [0.0] * p
    nxt = [0] * p
    ops: list[PipelineOp] = []

    def ready_at(unit, r):
        times = [free[r]]
        for op in unit:
            for dep, handoff in _deps(*op, p):
                if dep in unit:
                    continue
                if dep not in end:
                    return None
                times.append(end[dep] + (t_comm if handoff else 0.0))
        return max(times)

    progress = True
    while progress:
        progress = False
        for r in range(p):
            while nxt[r] < len(orders[r]) and (start := ready_at(orders[r][nxt[r]], r)) is not None:
                unit = orders[r][nxt[r]]
                nxt[r] += 1
                progress = True
                if len(unit) == 1:
                    finish = start + cost[unit[0][0]]
                    ops.append(PipelineOp(*unit[0], r, start, finish))
                    end[unit[0]] = free[r] = finish
                    continue
                finish = start + cost["F&B"]
                scale = cost["F&B"] / sum(cost[op[0]] for op in unit)
                t = start
                for op in unit:
                    ops.append(PipelineOp(*op, r, t, t + cost[op[0]] * scale, overlapped=True))
                    t += cost[op[0]] * scale
                    end[op] = finish
                free[r] = finish
    if any(nxt[r] < len(orders[r]) for r in range(p)):
        raise RuntimeError("pipeline schedule deadlocked: the per-rank orders are inconsistent")
    return sorted(ops, key=lambda o: (o.rank, o.start))


def _deps(kind, mb, stage, n_stages):
    """(op, needs hand-off) pairs that must finish before (kind, mb, stage)."""
    if kind == "F":
        return [(("F", mb, stage - 1), True)] if stage > 0 else []
    if kind == "B":
        own = [(("F", mb, stage), False)]
        return own + ([(("B", mb, stage + 1), True)] if stage < n_stages - 1 else [])
    return [(("B", mb, stage), False)]


def _simulate(p, v, m, cost, t_comm, orders=None, policy=None) -> list[PipelineOp]:
    """Event-driven list scheduling. Each rank runs one op at a time; an op starts when its
    rank is free and its dependencies have finished (plus t_comm across a hand-off).
    With `orders`, each rank follows its list strictly; with `policy`, it picks among ready ops."""
    n_stages = p * v
    split = policy is not None
    kinds = ("F", "B", "W") if split else ("F", "B")
    todo = {r: [(k, i, c * p + r) for c in range(v) for i in range(m) for k in kinds] for r in range(p)}
    end: dict[tuple, float] = {}
    free = [0.0] * p
    state = {"inflight": [0] * p}
    releases: list[tuple[float, int]] = []     # (time, rank): B finished, activations freed
    ops: list[PipelineOp] = []
    remaining = sum(len(t) for t in todo.values())
    t = 0.0
    while remaining:
        while releases and releases[0][0] <= t:
            _, r = heapq.heappop(releases)
            state["inflight"][r] -= 1

        def ready_at(o):
            times = [0.0]
            for dep, handoff in _deps(*o, n_stages):
                if dep not in end:
                    return None
                times.append(end[dep] + (t_comm if handoff else 0.0))
            return max(times)

        started = False
        for r in range(p):
            if free[r] > t:
                continue
            if orders is not None:
                if not orders[r]:
                    continue
                nxt = orders[r][0]
                at = ready_at(nxt)
                choice = nxt if at is not None and at <= t else None
            else:
                ready = [o for o in todo[r] if (a := ready_at(o)) is not None and a <= t]
                choice = policy(r, ready, state)
            if choice is None:
                continue
            if orders is not None:
                orders[r].pop(0)
            todo[r].remove(choice)
            kind, mb, stage = choice
            finish = t + cost[kind]
            end[choice] = finish
            ops.append(PipelineOp(kind, mb, stage, r, t, finish))
            free[r] = finish
            if kind == "F":
                state["inflight"][r] += 1
            elif kind == "B":
                heapq.heappush(releases, (finish, r))
            remaining -= 1
            started = True
        if started:
            continue   # look again at the same t: a rank that started nothing may still be idle
        # advance to the next moment something can change: a rank frees up or a hand-off lands
        candidates = [f for f in free if f > t]
        candidates += [e + t_comm for e in end.values() if e + t_comm > t]
        candidates += [rt for rt, _ in releases if rt > t]
        if not candidates:
            raise RuntimeError("pipeline schedule deadlocked: the per-rank orders are inconsistent")
        t = min(candidates)
    return sorted(ops, key=lambda o: (o.rank, o.start))


def _peak_inflight(rank_ops: Sequence[PipelineOp], v: int) -> float:
    events = []
    for o in rank_ops:
        if o.kind == "F":
            events.append((o.start, 1))
        elif o.kind == "B":
            events.append((o.end, -1))
    events.sort(key=lambda e: (e[0], e[1]))   # a release at time t happens before a start at t
    level = peak = 0
    for _, delta in events:
        level += delta
        peak = max(peak, level)
    return peak / v
