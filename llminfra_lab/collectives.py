"""Collective communication: ring all-reduce from send/recv, its cost model, and the fabric under it.

Read top to bottom:

1. `launch` starts a process group of `world_size` local processes (gloo on CPU; the
   same code runs with NCCL across GPUs) and returns what each rank's function returned.
   The parallelism and training-framework chapters reuse it.
2. `ring_reduce_scatter`, `ring_all_gather` and `ring_all_reduce` build the three ring
   collectives from nothing but point-to-point `isend`/`irecv`, for any tensor size
   (chunks may be uneven or empty). `ring_vs_torch` runs them beside `dist.all_reduce`.
3. The alpha-beta cost model: sending n bytes costs alpha + n * beta seconds. From it,
   `ring_all_reduce_time`, `tree_all_reduce_time` (NCCL's double binary tree) and
   `hierarchical_all_reduce_time` (inside the node, then across nodes), priced on
   `FABRICS` (NVLink, InfiniBand, RoCE): cited bandwidths, assumed latencies.
4. nccl-tests' algorithm and bus bandwidth, and the bytes each rank moves.
5. Measuring: `measure_collective` times a collective at several sizes on N local
   processes; `fit_alpha_beta` recovers alpha and beta by least squares.
6. Fat-trees: `fat_tree` sizes a k-ary fat-tree built from k-port switches.
7. Plots for the chapter and the lab.

Units: sizes in bytes, times in seconds, bandwidths in bytes/s per direction unless a
name says otherwise.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from llminfra_lab.launch import launch

__all__ = [
    "launch",
    # ring collectives from point-to-point messages
    "chunk_sizes", "ring_reduce_scatter", "ring_all_gather", "ring_all_reduce", "ring_vs_torch",
    # alpha-beta cost model
    "Fabric", "FABRICS", "fabric", "fabric_table_markdown", "scale_up_fabric", "scale_up_table_markdown",
    "ring_all_reduce_time", "ring_reduce_scatter_time", "tree_all_reduce_time", "hierarchical_all_reduce_time", "all_reduce_time",
    # nccl-tests bandwidths
    "BUSBW_FACTORS", "algorithm_bandwidth", "bus_bandwidth", "bytes_sent_per_rank",
    # measuring and fitting
    "Measurement", "AlphaBeta", "measure_collective", "fit_alpha_beta", "time_collective_on_rank",
    # topology
    "FatTree", "fat_tree",
    # plots
    "plot_all_reduce_model", "plot_fat_tree_scaling", "plot_fit", "plot_hierarchical",
]


# ---------------------------------------------------------------------------------------
# 2. Ring collectives from point-to-point send/recv
# ---------------------------------------------------------------------------------------
#
# p ranks sit on a ring; each only ever sends to its right neighbour (rank + 1) and
# receives from its left neighbour (rank - 1). The buffer is cut into p chunks.
# Reduce-scatter: in p - 1 steps every rank forwards a partial sum one hop and adds the
# chunk it receives; afterwards rank r holds the full sum of chunk r.
# All-gather: in p - 1 more steps the finished chunks travel round the ring.
# All-reduce = reduce-scatter + all-gather, so each rank sends 2 (p - 1) chunks.

def chunk_sizes(numel: int, world_size: int) -> list[int]:
    """Element counts of the `world_size` ring chunks of a `numel`-element buffer.

    The first ``numel % world_size`` chunks get one extra element (the split
    `torch.tensor_split` makes); chunks are empty when ``numel < world_size``.
    """
    if not isinstance(numel, int) or numel < 0:
        raise ValueError(f"numel must be an int >= 0, got {numel!r}")
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be an int >= 1, got {world_size!r}")
    base, extra = divmod(numel, world_size)
    return [base + (1 if i < extra else 0) for i in range(world_size)]


def _group_info() -> tuple[int, int]:
    if not dist.is_initialized():
        raise ValueError("no torch.distributed process group: call this inside a function run by launch()")
    return dist.get_rank(), dist.get_world_size()


def _flat_view(tensor: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if not tensor.is_contiguous():
        raise ValueError(f"{name} must be contiguous (call .contiguous() first)")
    if not (tensor.is_floating_point() or tensor.is_complex() or tensor.dtype in
            (torch.int32, torch.int64, torch.int16, torch.int8, torch.uint8)):
        raise ValueError(f"{name} must hold numbers, got dtype {tensor.dtype}")
    return tensor.view(-1)


def _exchange(send: torch.Tensor, recv: torch.Tensor, rank: int, world: int, stats: dict | None) -> None:
    """Send `send` to the right neighbour while receiving `recv` from the left one."""
    right, left = (rank + 1) % world, (rank - 1) % world
    ops = []
    if send.numel():
        ops.append(dist.isend(send.contiguous(), dst=right))
    if recv.numel():
        ops.append(dist.irecv(recv, src=left))
    for op in ops:
        op.wait()
    if stats is not None:
        stats["bytes_sent"] = stats.get("bytes_sent", 0) + send.numel() * send.element_size()
        stats["bytes_received"] = stats.get("bytes_received", 0) + recv.numel() * recv.element_size()
        stats["steps"] = stats.get("steps", 0) + 1


def _chunks(flat: torch.Tensor, world: int) -> list[torch.Tensor]:
    sizes = chunk_sizes(flat.numel(), world)
    return list(torch.split(flat, sizes))


def _ring_reduce_scatter_inplace(flat: torch.Tensor, rank: int, world: int, stats: dict | None) -> None:
    chunks = _chunks(flat, world)
    for step in range(world - 1):
        send_idx = (rank - step - 1) % world
        recv_idx = (rank - step - 2) % world
        incoming = torch.empty_like(chunks[recv_idx])
        _exchange(chunks[send_idx], incoming, rank, world, stats)
        chunks[recv_idx].add_(incoming)        # after the last step chunk `rank` is complete


def _ring_all_gather_inplace(flat: torch.Tensor, rank: int, world: int, stats: dict | None) -> None:
    chunks = _chunks(flat, world)
    for step in range(world - 1):
        send_idx = (rank - step) % world
        recv_idx = (rank - step - 1) % world
        _exchange(chunks[send_idx], chunks[recv_idx], rank, world, stats)   # receive in place


def ring_reduce_scatter(tensor: torch.Tensor, stats: dict | None = None) -> torch.Tensor:
    """Sum `tensor` over all ranks and return this rank's chunk of the flattened sum.

    Chunk r is ``torch.split(sum.view(-1), chunk_sizes(numel, p))[r]``. `tensor` is not
    modified. `stats`, if given, accumulates "bytes_sent", "bytes_received" and "steps".
    Must run inside a process group (e.g. a function started by `launch`).
    """
    rank, world = _group_info()
    work = _flat_view(tensor, "tensor").clone()
    _ring_reduce_scatter_inplace(work, rank, world, stats)
    return _chunks(work, world)[rank].clone()


def ring_all_gather(chunk: torch.Tensor, sizes: Sequence[int] | None = None,
                    stats: dict | None = None) -> torch.Tensor:
    """Concatenate every rank's 1-D `chunk` in rank order, on every rank.

    `sizes` lists each rank's chunk length (all ranks must pass the same list); by
    default every chunk is as long as this rank's. Returns a new 1-D tensor.
    """
    rank, world = _group_info()
    chunk = _flat_view(chunk, "chunk")
    if sizes is None:
        sizes = [chunk.numel()] * world
    sizes = list(sizes)
    if len(sizes) != world or any((not isinstance(s, int)) or s < 0 for s in sizes):
        raise ValueError(f"sizes must be {world} ints >= 0 (one per rank), got {sizes!r}")
    if sizes[rank] != chunk.numel():
        raise ValueError(f"sizes[{rank}] = {sizes[rank]} but this rank's chunk has {chunk.numel()} elements")
    out = torch.empty(sum(sizes), dtype=chunk.dtype, device=chunk.device)
    pieces = list(torch.split(out, sizes))
    pieces[rank].copy_(chunk)
    for step in range(world - 1):
        send_idx = (rank - step) % world
        recv_idx = (rank - step - 1) % world
        _exchange(pieces[send_idx], pieces[recv_idx], rank, world, stats)
    return out


def ring_all_reduce(tensor: torch.Tensor, stats: dict | None = None) -> torch.Tensor:
    """Sum `tensor` over all ranks, in place, with a ring: reduce-scatter then all-gather.

    Works for any contiguous shape and size (uneven or empty chunks included) and
    returns `tensor`. Each rank sends 2 (p - 1) chunks, about 2 (p - 1) / p of the bytes.
    """
    rank, world = _group_info()
    flat = _flat_view(tensor, "tensor")
    _ring_reduce_scatter_inplace(flat, rank, world, stats)
    _ring_all_gather_inplace(flat, rank, world, stats)
    return tensor


def ring_vs_torch(rank: int, world_size: int, numel: int, seed: int = 0) -> dict[str, Any]:
    """Run on every rank (via `launch`): the ring collectives beside torch's own.

    Each rank draws its own float64 vector of `numel` elements from ``seed + rank``.
    Returns the largest absolute differences from `dist.all_reduce` (all-reduce and
    reduce-scatter) and from a padded `dist.all_gather` (all-gather), and the bytes this
    rank sent during the ring all-reduce.
    """
    if not isinstance(numel, int) or numel < 0:
        raise ValueError(f"numel must be an int >= 0, got {numel!r}")
    gen = torch.Generator().manual_seed(seed + rank)
    x = torch.randn(numel, generator=gen, dtype=torch.float64)

    reference = x.clone()
    dist.all_reduce(reference)                       # torch's own all-reduce, the reference

    stats: dict[str, int] = {}
    ours = ring_all_reduce(x.clone(), stats=stats)

    sizes = chunk_sizes(numel, world_size)
    mine = ring_reduce_scatter(x)
    ref_chunk = torch.split(reference, sizes)[rank]

    # all-gather: each rank contributes its own (uneven) chunk of x
    piece = torch.split(x, sizes)[rank].clone()
    gathered = ring_all_gather(piece, sizes)
    width = max(sizes) if sizes else 0
    padded = torch.zeros(width, dtype=x.dtype)
    padded[:piece.numel()] = piece
    bucket = [torch.empty(width, dtype=x.dtype) for _ in range(world_size)]
    dist.all_gather(bucket, padded)
    ref_gathered = torch.cat([b[:s] for b, s in zip(bucket, sizes)])

    def err(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).abs().max()) if a.numel() else 0.0

    return {
        "all_reduce_err": err(ours, reference),
        "reduce_scatter_err": err(mine, ref_chunk),
        "all_gather_err": err(gathered, ref_gathered),
        "all_gather_shape_ok": gathered.shape == ref_gathered.shape,
        "scale": float(reference.abs().max()) if numel else 0.0,
        "bytes_sent": stats.get("bytes_sent", 0),
        "bytes_received": stats.get("bytes_received", 0),
        "steps": stats.get("steps", 0),
        "element_size": x.element_size(),
    }


# ---------------------------------------------------------------------------------------
# 3. The alpha-beta cost model
# ---------------------------------------------------------------------------------------
#
# Sending one message of n bytes over a link costs alpha + n * beta seconds: alpha is
# the fixed start-up latency, beta = 1 / bandwidth. A collective is a schedule of
# messages, so its time is (number of sequential steps) * alpha + (bytes on the busiest
# link) * beta.

@dataclass(frozen=True)
class Fabric:
    """One link class: per-GPU bandwidth in one direction and an *assumed* start-up latency.

    `bandwidth_Bps` is bytes/s per GPU per direction (half a datasheet's bidirectional
    figure, or a port's line rate / 8); `source` is the citation key of that bandwidth.
    `alpha_s` is NOT a datasheet number: no vendor publishes a per-message latency for a
    collective step, which depends on the software stack, the message protocol and the
    number of switch hops. The values in `FABRICS` are order-of-magnitude assumptions,
    stated as such in `alpha_basis`; fit your own with `fit_alpha_beta`.
    """
    name: str
    bandwidth_Bps: float
    alpha_s: float
    kind: str       # "scale-up" (inside a node or rack) or "scale-out" (the network)
    source: str
    notes: str = ""
    alpha_basis: str = "assumed (order of magnitude, not measured or published)"

    @property
    def beta_s_per_byte(self) -> float:
        return 1.0 / self.bandwidth_Bps


# Bandwidths are cited; every alpha is an assumption (see Fabric). NDR-IB and RoCE-400G
# share a bandwidth on purpose: both are one 400 Gb/s port per GPU (Llama 3 trained on
# both, at 400 Gb/s per GPU), so the line rate is identical. What differs in practice is
# latency and behaviour under congestion (PFC pauses, ECN/DCQCN rate cuts), which this
# model can only express as a larger assumed alpha for RoCE.
FABRICS: dict[str, Fabric] = {f.name: f for f in (
    Fabric("NVLink3", 300e9, 2e-6, "scale-up", "nvidia2020a100",
           "A100: 12 links, 600 GB/s bidirectional per GPU"),
    Fabric("NVLink4", 450e9, 2e-6, "scale-up", "nvidia2022h100",
           "H100: 18 links, 900 GB/s bidirectional per GPU"),
    Fabric("NVLink5", 900e9, 2e-6, "scale-up", "nvidia2024nvlink",
           "B200/GB200: 18 links of 100 GB/s, 1.8 TB/s bidirectional per GPU"),
    Fabric("PCIe5", 64e9, 3e-6, "scale-up", "nvidia2024nvlink",
           "PCIe Gen5 x16: 1.8 TB/s / 14 (NVIDIA: NVLink 5 is over 14x PCIe Gen5), "
           "about 128 GB/s bidirectional, matching 32 GT/s x 16 lanes"),
    Fabric("NDR-IB", 50e9, 5e-6, "scale-out", "nvidia2021quantum2",
           "InfiniBand NDR, one 400 Gb/s port per GPU"),
    Fabric("XDR-IB", 100e9, 5e-6, "scale-out", "nvidia2024quantumx800",
           "InfiniBand XDR, one 800 Gb/s port per GPU"),
    Fabric("RoCE-400G", 50e9, 8e-6, "scale-out", "grattafiori2024llama3",
           "RoCEv2 over 400 GbE, one port per GPU: the same 400 Gb/s line rate as NDR, so the "
           "same bandwidth; only the assumed alpha is larger, standing in for Ethernet switch "
           "latency and congestion control, which the alpha-beta model cannot represent"),
)}


def fabric(name: str) -> Fabric:
    """Look up a fabric in `FABRICS` by name, case-insensitively (KeyError lists the names)."""
    if not isinstance(name, str):
        raise KeyError(f"fabric name must be a string; known: {sorted(FABRICS)}")
    for key, value in FABRICS.items():
        if key.lower() == name.lower():
            return value
    raise KeyError(f"unknown fabric {name!r}; known: {sorted(FABRICS)}")


def fabric_table_markdown(names: Sequence[str] | None = None) -> str:
    """A MyST table of `FABRICS`: cited bandwidth per direction, and the assumed alpha.

    One row per fabric (all of them by default), with a {cite} for the bandwidth and the
    latency marked as an assumption. KeyError for an unknown name.
    """
    chosen = [fabric(n) for n in (FABRICS if names is None else names)]
    rows = ["| Fabric | Kind | Per direction (GB/s) | Bandwidth source | alpha (us), assumed |",
            "|---|---|---|---|---|"]
    for f in chosen:
        rows.append(f"| {f.name} | {f.kind} | {f.bandwidth_Bps / 1e9:,.0f} | {{cite:p}}`{f.source}` | "
                    f"{f.alpha_s * 1e6:g} |")
    return "\n".join(rows)


def scale_up_fabric(accelerator_name: str, alpha_s: float = 2e-6) -> Fabric:
    """The scale-up link (NVLink, Infinity Fabric, HCCS/UB) of an accelerator in `hardware`.

    Bandwidth per direction is half the chip's bidirectional `scaleup_gbps`; `alpha_s` is
    an assumed per-message latency. KeyError (listing the names) for an unknown chip.
    """
    from llminfra_lab.hardware import accelerator

    if not (isinstance(alpha_s, (int, float)) and math.isfinite(alpha_s) and alpha_s >= 0):
        raise ValueError(f"alpha_s must be a finite number >= 0, got {alpha_s!r}")
    acc = accelerator(accelerator_name)
    return Fabric(f"{acc.name} scale-up", acc.scaleup_gbps * 1e9 / 2, float(alpha_s), "scale-up",
                  acc.source, f"{acc.vendor} {acc.name}: {acc.scaleup_gbps:g} GB/s bidirectional")


def scale_up_table_markdown(names: Sequence[str] = ("A100-SXM-80GB", "H100-SXM", "H800-SXM", "B200",
                                                    "MI300X", "Ascend-910C")) -> str:
    """A MyST table of scale-up bandwidth per chip, with one NDR port for scale, and a {cite} per row."""
    ndr = FABRICS["NDR-IB"].bandwidth_Bps
    rows = ["| Accelerator | Scale-up, both directions (GB/s) | Per direction (GB/s) | x one NDR port | Source |",
            "|---|---|---|---|---|"]
    for name in names:
        f = scale_up_fabric(name)
        rows.append(f"| {name} | {2 * f.bandwidth_Bps / 1e9:,.0f} | {f.bandwidth_Bps / 1e9:,.0f} | "
                    f"{f.bandwidth_Bps / ndr:.1f} | {{cite:p}}`{f.source}` |")
    return "\n".join(rows)


def _check_cost_args(size_bytes: float, world_size: int, alpha_s: float, bandwidth_Bps: float) -> None:
    if not (isinstance(size_bytes, (int, float)) and math.isfinite(size_bytes) and size_bytes >= 0):
        raise ValueError(f"size_bytes must be a finite number >= 0, got {size_bytes!r}")
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be an int >= 1, got {world_size!r}")
    if not (alpha_s >= 0 and math.isfinite(alpha_s)):
        raise ValueError(f"alpha_s must be a finite number >= 0, got {alpha_s!r}")
    if not (bandwidth_Bps > 0 and math.isfinite(bandwidth_Bps)):
        raise ValueError(f"bandwidth_Bps must be a finite number > 0, got {bandwidth_Bps!r}")


def ring_all_reduce_time(size_bytes: float, world_size: int, alpha_s: float, bandwidth_Bps: float) -> float:
    """Seconds for a ring all-reduce of `size_bytes` over `world_size` ranks.

    2 (p - 1) steps, each sending S / p bytes:  2 (p - 1) alpha + 2 (p - 1) / p * S / B.
    """
    _check_cost_args(size_bytes, world_size, alpha_s, bandwidth_Bps)
    p = world_size
    return 2 * (p - 1) * alpha_s + 2 * (p - 1) / p * size_bytes / bandwidth_Bps


def ring_reduce_scatter_time(size_bytes: float, world_size: int, alpha_s: float, bandwidth_Bps: float) -> float:
    """Seconds for a ring reduce-scatter (or all-gather) of a `size_bytes` buffer.

    p - 1 steps of S / p bytes:  (p - 1) alpha + (p - 1) / p * S / B.
    """
    _check_cost_args(size_bytes, world_size, alpha_s, bandwidth_Bps)
    p = world_size
    return (p - 1) * alpha_s + (p - 1) / p * size_bytes / bandwidth_Bps


def tree_all_reduce_time(size_bytes: float, world_size: int, alpha_s: float, bandwidth_Bps: float) -> float:
    """Seconds for a pipelined double-binary-tree all-reduce (NCCL's "tree" algorithm).

    Reduce up a tree of depth ceil(log2 p), then broadcast down: the latency term grows
    like 2 ceil(log2 p) alpha instead of the ring's 2 (p - 1) alpha. With two
    complementary trees each carrying half the data, every rank sends and receives
    about S bytes in each phase, so the bandwidth term is about 2 S / B (the ring's
    2 (p - 1) / p * S / B tends to the same for large p).
    """
    _check_cost_args(size_bytes, world_size, alpha_s, bandwidth_Bps)
    if world_size == 1:
        return 0.0
    depth = math.ceil(math.log2(world_size))
    return 2 * depth * alpha_s + 2 * size_bytes / bandwidth_Bps


def hierarchical_all_reduce_time(size_bytes: float, gpus_per_node: int, nodes: int,
                                 intra: Fabric | str = "NVLink4", inter: Fabric | str = "NDR-IB") -> float:
    """Seconds for a two-level all-reduce: inside each node, then across nodes, then back.

    1. ring reduce-scatter among the g GPUs of a node over `intra` (each GPU ends with S / g);
    2. g concurrent ring all-reduces across the m nodes, one per "rail" (GPU i of every
       node, through its own NIC), each on S / g bytes over `inter`;
    3. ring all-gather inside the node over `intra`.
    The network carries only S / g per GPU, which is why rail-optimized clusters give
    every GPU its own NIC.
    """
    if not isinstance(gpus_per_node, int) or gpus_per_node < 1:
        raise ValueError(f"gpus_per_node must be an int >= 1, got {gpus_per_node!r}")
    if not isinstance(nodes, int) or nodes < 1:
        raise ValueError(f"nodes must be an int >= 1, got {nodes!r}")
    f_in = intra if isinstance(intra, Fabric) else fabric(intra)
    f_out = inter if isinstance(inter, Fabric) else fabric(inter)
    g, m = gpus_per_node, nodes
    inside = ring_reduce_scatter_time(size_bytes, g, f_in.alpha_s, f_in.bandwidth_Bps)
    across = ring_all_reduce_time(size_bytes / g, m, f_out.alpha_s, f_out.bandwidth_Bps)
    return 2 * inside + across


def all_reduce_time(size_bytes: float, world_size: int, fabric_name: str | Fabric,
                    algorithm: str = "ring") -> float:
    """Seconds for an all-reduce on one fabric with `algorithm` "ring" or "tree"."""
    f = fabric_name if isinstance(fabric_name, Fabric) else fabric(fabric_name)
    models = {"ring": ring_all_reduce_time, "tree": tree_all_reduce_time}
    if algorithm not in models:
        raise ValueError(f"algorithm must be one of {sorted(models)}, got {algorithm!r}")
    return models[algorithm](size_bytes, world_size, f.alpha_s, f.bandwidth_Bps)


# ---------------------------------------------------------------------------------------
# 4. Algorithm bandwidth, bus bandwidth (nccl-tests) and bytes per rank
# ---------------------------------------------------------------------------------------

BUSBW_FACTORS: dict[str, Callable[[int], float]] = {
    # busbw = algbw * factor(n): the nccl-tests correction that makes a collective's
    # bandwidth comparable with the link's peak, whatever the number of ranks n.
    "all_reduce": lambda n: 2 * (n - 1) / n,
    "reduce_scatter": lambda n: (n - 1) / n,
    "all_gather": lambda n: (n - 1) / n,
    "all_to_all": lambda n: (n - 1) / n,
    "broadcast": lambda n: 1.0,
    "reduce": lambda n: 1.0,
}


def algorithm_bandwidth(size_bytes: float, seconds: float) -> float:
    """nccl-tests' algbw: the buffer size S divided by the time t, in bytes/s."""
    if not (size_bytes >= 0 and math.isfinite(size_bytes)):
        raise ValueError(f"size_bytes must be a finite number >= 0, got {size_bytes!r}")
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"seconds must be a finite number > 0, got {seconds!r}")
    return size_bytes / seconds


def bus_bandwidth(algbw_Bps: float, collective: str, world_size: int) -> float:
    """nccl-tests' busbw = algbw * factor: 2 (n - 1) / n for all-reduce, (n - 1) / n for
    reduce-scatter, all-gather and all-to-all, 1 for broadcast and reduce."""
    if collective not in BUSBW_FACTORS:
        raise KeyError(f"unknown collective {collective!r}; known: {sorted(BUSBW_FACTORS)}")
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be an int >= 1, got {world_size!r}")
    if not (algbw_Bps >= 0 and math.isfinite(algbw_Bps)):
        raise ValueError(f"algbw_Bps must be a finite number >= 0, got {algbw_Bps!r}")
    return algbw_Bps * BUSBW_FACTORS[collective](world_size)


def bytes_sent_per_rank(collective: str, size_bytes: float, world_size: int) -> float:
    """Bytes each rank sends in a ring `collective` on an S-byte buffer (even split).

    all_reduce 2 (p - 1) / p * S; reduce_scatter and all_gather (p - 1) / p * S, S being
    the whole buffer. This is the same factor as the bus bandwidth: busbw is the rate
    at which each rank's link actually moved bytes.
    """
    ring = {"all_reduce": 2.0, "reduce_scatter": 1.0, "all_gather": 1.0}
    if collective not in ring:
        raise KeyError(f"unknown ring collective {collective!r}; known: {sorted(ring)}")
    _check_cost_args(size_bytes, world_size, 0.0, 1.0)
    p = world_size
    return ring[collective] * (p - 1) / p * size_bytes


# ---------------------------------------------------------------------------------------
# 5. Measuring a collective and fitting alpha and beta
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Measurement:
    """Times of one collective at several sizes: `seconds[i]` for `sizes_bytes[i]`."""
    collective: str
    impl: str
    world_size: int
    sizes_bytes: tuple[int, ...]
    seconds: tuple[float, ...]


@dataclass(frozen=True)
class AlphaBeta:
    """A fitted alpha-beta model: per-message latency and per-byte cost of one link."""
    alpha_s: float
    beta_s_per_byte: float
    residual_rms_s: float

    @property
    def bandwidth_Bps(self) -> float:
        return math.inf if self.beta_s_per_byte <= 0 else 1.0 / self.beta_s_per_byte


_COLLECTIVES = ("all_reduce", "reduce_scatter", "all_gather")


def _step_counts(collective: str, world_size: int) -> tuple[float, float]:
    """(number of alpha terms, multiplier of S * beta) of the ring `collective`."""
    p = world_size
    if collective == "all_reduce":
        return 2 * (p - 1), 2 * (p - 1) / p
    return p - 1, (p - 1) / p


def time_collective_on_rank(rank: int, world_size: int, sizes_bytes: Sequence[int], repeats: int = 5,
                            collective: str = "all_reduce", impl: str = "ring") -> list[float]:
    """Run on every rank (via `launch`): median seconds of `collective` for each size.

    `impl` "ring" uses this module's send/recv ring, "torch" the backend's own
    collective. Buffers are float32; ranks meet at a barrier before every repetition.
    """
    if collective not in _COLLECTIVES:
        raise ValueError(f"collective must be one of {_COLLECTIVES}, got {collective!r}")
    if impl not in ("ring", "torch"):
        raise ValueError(f"impl must be 'ring' or 'torch', got {impl!r}")
    p = world_size
    medians = []
    for size in sizes_bytes:
        numel = max(1, int(size) // 4)
        x = torch.ones(numel, dtype=torch.float32)
        sizes = chunk_sizes(numel, p)
        piece = torch.split(x, sizes)[rank].clone()
        runs = []
        for _ in range(repeats + 1):                  # the first run warms up and is dropped
            dist.barrier()
            start = time.perf_counter()
            if collective == "all_reduce":
                ring_all_reduce(x) if impl == "ring" else dist.all_reduce(x)
            elif collective == "reduce_scatter":
                if impl == "ring":
                    ring_reduce_scatter(x)
                else:
                    out = torch.empty(numel // p, dtype=x.dtype)
                    getattr(dist, "reduce_scatter_single", dist.reduce_scatter_tensor)(
                        out, x[: (numel // p) * p])
            else:
                if impl == "ring":
                    ring_all_gather(piece, sizes)
                else:
                    out = torch.empty((numel // p) * p, dtype=x.dtype)
                    getattr(dist, "all_gather_single", dist.all_gather_into_tensor)(
                        out, x[: numel // p].clone())
            runs.append(time.perf_counter() - start)
            x.fill_(1.0)
        medians.append(float(np.median(runs[1:])))
    return medians


def measure_collective(world_size: int, sizes_bytes: Sequence[int], repeats: int = 5,
                       collective: str = "all_reduce", impl: str = "ring",
                       timeout_s: float = 120.0) -> Measurement:
    """Time `collective` at each size on `world_size` local gloo processes (one launch).

    For every size the reported time is the slowest rank's median over `repeats` runs
    (a collective is finished only when its last rank is).
    """
    if not isinstance(world_size, int) or world_size < 2:
        raise ValueError(f"world_size must be an int >= 2, got {world_size!r}")
    sizes = [int(s) for s in sizes_bytes]
    if not sizes or any(s < 4 for s in sizes):
        raise ValueError(f"sizes_bytes must be a non-empty list of sizes >= 4 bytes, got {list(sizes_bytes)!r}")
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    if collective not in _COLLECTIVES:
        raise ValueError(f"collective must be one of {_COLLECTIVES}, got {collective!r}")
    if impl not in ("ring", "torch"):
        raise ValueError(f"impl must be 'ring' or 'torch', got {impl!r}")
    per_rank = launch(time_collective_on_rank, world_size, sizes, repeats, collective, impl,
                      timeout_s=timeout_s)
    slowest = np.max(np.array(per_rank), axis=0)
    return Measurement(collective, impl, world_size, tuple(sizes), tuple(float(t) for t in slowest))


def fit_alpha_beta(sizes_bytes: Sequence[float], seconds: Sequence[float], world_size: int,
                   collective: str = "all_reduce") -> AlphaBeta:
    """Least-squares alpha and beta of the ring model t = a(p) alpha + b(p) S beta.

    For all-reduce a = 2 (p - 1) and b = 2 (p - 1) / p; for reduce-scatter and
    all-gather a = p - 1 and b = (p - 1) / p. Needs at least two distinct sizes.
    Returns per-message alpha (s), per-byte beta (s/byte) and the rms residual (s).
    """
    s = np.asarray(sizes_bytes, dtype=float)
    t = np.asarray(seconds, dtype=float)
    if s.ndim != 1 or t.ndim != 1 or len(s) != len(t):
        raise ValueError(f"sizes_bytes and seconds must be 1-D and the same length, got {s.shape} and {t.shape}")
    if len(np.unique(s)) < 2:
        raise ValueError("need at least two distinct sizes to separate alpha from beta")
    if np.any(~np.isfinite(s)) or np.any(s < 0) or np.any(~np.isfinite(t)) or np.any(t <= 0):
        raise ValueError("sizes_bytes must be finite and >= 0, seconds finite and > 0")
    if not isinstance(world_size, int) or world_size < 2:
        raise ValueError(f"world_size must be an int >= 2, got {world_size!r}")
    if collective not in _COLLECTIVES:
        raise ValueError(f"collective must be one of {_COLLECTIVES}, got {collective!r}")
    a, b = _step_counts(collective, world_size)
    design = np.column_stack([np.full_like(s, a), b * s])
    (alpha, beta), *_ = np.linalg.lstsq(design, t, rcond=None)
    residual = t - design @ np.array([alpha, beta])
    return AlphaBeta(float(alpha), float(beta), float(np.sqrt(np.mean(residual ** 2))))


# ---------------------------------------------------------------------------------------
# 6. Fat-trees
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FatTree:
    """Size of a non-blocking k-ary fat-tree built from identical k-port switches."""
    radix: int
    levels: int
    hosts: int
    switches: int
    links: int          # switch-to-switch cables (host cables excluded)

    @property
    def switches_per_host(self) -> float:
        return self.switches / self.hosts


def fat_tree(radix: int, levels: int = 3) -> FatTree:
    """Hosts and switches of a fat-tree of k-port switches (k = `radix`, even).

    Three levels (Al-Fares et al.): k pods, each with k/2 edge and k/2 aggregation
    switches, plus (k/2)^2 core switches: k^3/4 hosts and 5k^2/4 switches.
    Two levels (leaf-spine): k leaves with k/2 hosts each, k/2 spines: k^2/2 hosts
    and 3k/2 switches.
    """
    if not isinstance(radix, int) or radix < 2 or radix % 2:
        raise ValueError(f"radix must be an even int >= 2, got {radix!r}")
    if levels not in (2, 3):
        raise ValueError(f"levels must be 2 or 3, got {levels!r}")
    k = radix
    if levels == 3:
        hosts, switches = k ** 3 // 4, 5 * k * k // 4
        links = k * (k // 2) * (k // 2) * 2          # edge-agg plus agg-core, per pod
    else:
        hosts, switches = k * k // 2, 3 * k // 2
        links = k * (k // 2)                          # every leaf to every spine
    return FatTree(k, levels, hosts, switches, links)


# ---------------------------------------------------------------------------------------
# 7. Plots
# ---------------------------------------------------------------------------------------

def plot_all_reduce_model(world_size: int = 8, fabrics: Sequence[str] = ("NVLink4", "NDR-IB", "RoCE-400G"),
                          sizes_bytes: Sequence[float] | None = None, ax=None):
    """Predicted all-reduce time against message size, ring (solid) and tree (dashed)."""
    import matplotlib.pyplot as plt

    if not isinstance(world_size, int) or world_size < 2:
        raise ValueError(f"world_size must be an int >= 2, got {world_size!r}")
    sizes = np.logspace(3, 10, 57) if sizes_bytes is None else np.asarray(sizes_bytes, dtype=float)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2))
    for i, name in enumerate(fabrics):
        f = fabric(name)
        color = f"C{i}"
        ring = [all_reduce_time(float(s), world_size, f, "ring") for s in sizes]
        tree = [all_reduce_time(float(s), world_size, f, "tree") for s in sizes]
        ax.loglog(sizes, ring, color=color, label=f"{f.name} ring")
        ax.loglog(sizes, tree, color=color, linestyle="--", label=f"{f.name} tree")
    ax.set_xlabel("message size S (bytes)")
    ax.set_ylabel("predicted all-reduce time (s)")
    ax.set_title(f"Alpha-beta model, p = {world_size} ranks")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return ax.figure


def plot_fat_tree_scaling(radixes: Sequence[int] = tuple(range(8, 146, 2)),
                          marks: Sequence[int] = (48, 64, 144), ax=None):
    """Hosts of two- and three-level fat-trees against switch radix, log scale."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2))
    ks = list(radixes)
    for levels, formula in ((2, "k^2/2"), (3, "k^3/4")):
        ax.semilogy(ks, [fat_tree(k, levels).hosts for k in ks], "-", label=f"{levels} levels: {formula}")
    for k in marks:
        for levels in (2, 3):
            h = fat_tree(k, levels).hosts
            ax.plot([k], [h], "ko", ms=4)
            ax.annotate(f"{h:,}", (k, h), textcoords="offset points", xytext=(4, -10), fontsize=8)
    ax.margins(x=0.1)
    ax.set_xlabel("switch radix k (ports)")
    ax.set_ylabel("hosts (GPUs, one NIC port each)")
    ax.set_title("Non-blocking fat-tree size against switch radix")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return ax.figure


def plot_fit(measurement: Measurement, fit: AlphaBeta, ax=None):
    """Measured times (dots) and the fitted alpha-beta line."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4))
    s = np.asarray(measurement.sizes_bytes, dtype=float)
    a, b = _step_counts(measurement.collective, measurement.world_size)
    grid = np.logspace(np.log10(s.min()), np.log10(s.max()), 50)
    ax.loglog(s, measurement.seconds, "o", label=f"measured ({measurement.impl})")
    ax.loglog(grid, a * fit.alpha_s + b * grid * fit.beta_s_per_byte, "-",
              label=f"fit: alpha={fit.alpha_s * 1e6:.0f} us, 1/beta={fit.bandwidth_Bps / 1e9:.2f} GB/s")
    ax.set_xlabel("message size S (bytes)")
    ax.set_ylabel("seconds")
    ax.set_title(f"{measurement.collective} on {measurement.world_size} local processes")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return ax.figure


def plot_hierarchical(size_bytes: float = 1e9, gpus_per_node: int = 8,
                      nodes: Sequence[int] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
                      intra: str = "NVLink4", inter: str = "NDR-IB", ax=None):
    """All-reduce time against cluster size: flat ring over the network vs hierarchical."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2))
    f_out = fabric(inter)
    gpus = [gpus_per_node * m for m in nodes]
    flat = [all_reduce_time(size_bytes, p, f_out, "ring") for p in gpus]
    tree = [all_reduce_time(size_bytes, p, f_out, "tree") for p in gpus]
    hier = [hierarchical_all_reduce_time(size_bytes, gpus_per_node, m, intra, inter) for m in nodes]
    ax.semilogx(gpus, flat, "o-", label=f"flat ring over {inter}")
    ax.semilogx(gpus, tree, "s--", label=f"flat tree over {inter}")
    ax.semilogx(gpus, hier, "^-", label=f"hierarchical: {intra} inside, {inter} across")
    ax.set_xlabel("GPUs")
    ax.set_ylabel("predicted all-reduce time (s)")
    ax.set_title(f"All-reduce of {size_bytes / 1e9:g} GB, {gpus_per_node} GPUs per node")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return ax.figure
