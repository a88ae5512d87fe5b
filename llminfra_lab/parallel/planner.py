"""Layout planning: which (TP, PP, DP) layouts of a model fit a cluster, and what each costs.

`layout_memory_bytes` is one layout's memory per GPU (model states from
`memory.model_state_bytes`, activations from `memory.activation_bytes_per_layer`);
`plan_layouts` enumerates the layouts, keeps those that fit, and ranks them by a rough
step-time model. Both are conservative models, not predictions of a tuned run.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from llminfra_lab import hardware, memory
from llminfra_lab.catalog import ModelSpec, model_spec
from llminfra_lab.checks import positive_int, positive_number
from llminfra_lab.collectives import BUSBW_FACTORS

__all__ = ["Layout", "plan_layouts", "layout_memory_bytes", "RECOMPUTE"]

RECOMPUTE = memory.RECOMPUTE    # "none", "selective", "full": defined once, in memory


@dataclass(frozen=True)
class Layout:
    """One (TP, PP, DP) layout and what it costs per GPU, per optimizer step.

    Memory in bytes per GPU: model states (bf16 weights and grads, fp32 Adam states and
    master weights, sharded over DP by the ZeRO stage) and activations of the in-flight
    micro-batches. Communication in bytes sent per GPU per step: tensor-parallel
    all-reduces stay inside a node (NVLink); pipeline hand-offs and the data-parallel
    gradient reduction cross nodes. step_time_s is a rough model (see `plan_layouts`).
    """
    tp: int
    pp: int
    dp: int
    microbatches: int
    params_per_gpu: float
    weights_bytes: float
    grads_bytes: float
    optimizer_bytes: float
    activation_bytes: float
    tp_comm_bytes: float
    pp_comm_bytes: float
    dp_comm_bytes: float
    bubble_fraction: float
    step_time_s: float

    @property
    def memory_bytes(self) -> float:
        return self.weights_bytes + self.grads_bytes + self.optimizer_bytes + self.activation_bytes

    @property
    def intra_node_comm_bytes(self) -> float:
        return self.tp_comm_bytes

    @property
    def inter_node_comm_bytes(self) -> float:
        return self.pp_comm_bytes + self.dp_comm_bytes


def layout_memory_bytes(params: float, n_layers: int, d_model: int, *, tp: int, pp: int, dp: int,
                        seq_len: int, micro_batch: int, microbatches: int, n_heads: int = 1,
                        zero_stage: int = 1, recompute: str = "selective") -> dict[str, float]:
    """Per-GPU bytes of weights, grads, optimizer states and activations for one layout.

    The planner's model, deliberately conservative: TP x PP cut the model into tp * pp
    equal pieces, whose mixed-precision Adam states (`memory.model_state_bytes`: 2 + 2 +
    12 bytes per parameter) ZeRO then shards over the DP group; the first pipeline stage
    holds ceil(L / pp) layers' activations (`memory.activation_bytes_per_layer` with
    sequence parallelism, GPT layers with dropout) for min(pp, m) micro-batches, as
    under 1F1B. Not modelled: smaller first and last stages, the embedding and output
    layer, activation offloading, freeing tensors early, context parallelism, and the
    framework's buffers and fragmentation.
    """
    for label, value in (("tp", tp), ("pp", pp), ("dp", dp), ("microbatches", microbatches), ("n_layers", n_layers)):
        positive_int(label, value)
    positive_number("params", params)
    if zero_stage not in memory.ZERO_STAGES:
        raise ValueError(f"zero_stage must be one of {memory.ZERO_STAGES}, got {zero_stage!r}")
    states = memory.model_state_bytes(params / (tp * pp), zero_stage, dp, k=12, param_bytes=2, grad_bytes=2)
    per_layer = memory.activation_bytes_per_layer(seq_len, micro_batch, d_model, n_heads, tensor_parallel=tp,
                                                  sequence_parallel=True, recompute=recompute)
    activations = per_layer * math.ceil(n_layers / pp) * min(pp, microbatches)
    return {"weights": states["params"], "grads": states["grads"], "optimizer": states["optimizer"],
            "activations": activations}


def plan_layouts(model: str | ModelSpec, gpu: str | hardware.Accelerator, n_gpus: int, *, gpus_per_node: int = 8, seq_len: int = 4096,
                 global_batch: int = 1024, micro_batch: int = 1, zero_stage: int = 1,
                 recompute: str = "selective", usable_memory_fraction: float = 0.9,
                 scaleout_gbps: float = 50.0, mfu: float = 0.5, virtual_stages: int = 1) -> list[Layout]:
    """Every (TP, PP, DP) with TP * PP * DP = n_gpus whose memory per GPU fits, fastest first.

    model: a catalog name or `catalog.ModelSpec`; gpu: a `hardware` name or
    `hardware.Accelerator`. Rules: TP divides gpus_per_node (it stays inside the NVLink
    domain) and the number of attention heads; PP <= n_layers (uneven stages allowed,
    as Llama 3 405B's 126 layers on 16 stages); global_batch (sequences of seq_len
    tokens) splits into DP x micro_batch x m with m >= 1. A layout fits when memory
    (`layout_memory_bytes`) <= usable_memory_fraction x HBM.

    Communication per GPU per step, bf16 (2 bytes): TP, 4 ring all-reduces of an
    (s, b, h) activation per layer per micro-batch (2 forward, 2 backward), each sending
    2(t-1)/t of it; PP, one activation out and one gradient back per micro-batch; DP, a
    ring all-reduce (ZeRO: reduce-scatter + all-gather, the same volume) of this GPU's
    gradients. step_time_s, a rough model with no overlap: compute 6 x active params x
    tokens / (n_gpus x dense bf16 peak x mfu), stretched by (1 + bubble), plus TP bytes
    over half the scale-up bandwidth (one direction) and PP + DP bytes over scaleout_gbps
    (GB/s per GPU; 50 = a 400 Gb/s NIC). MoE models count every expert on every GPU (no
    expert parallelism): an upper bound on memory. virtual_stages v > 1 models the
    interleaved schedule: bubble (pp-1)/(v m), v times the pipeline hand-offs (its
    slightly larger activation memory is not counted).
    """
    spec = model_spec(model) if isinstance(model, str) else model
    if not isinstance(spec, ModelSpec):
        raise ValueError(f"model must be a catalog name or a ModelSpec, got {type(model).__name__}")
    acc = _accelerator(gpu)
    for label, value in (("n_gpus", n_gpus), ("gpus_per_node", gpus_per_node), ("seq_len", seq_len),
                         ("global_batch", global_batch), ("micro_batch", micro_batch),
                         ("virtual_stages", virtual_stages)):
        positive_int(f"{label}", value)
    for label, value in (("usable_memory_fraction", usable_memory_fraction), ("mfu", mfu), ("scaleout_gbps", scaleout_gbps)):
        positive_number(label, value)
    for label, value in (("usable_memory_fraction", usable_memory_fraction), ("mfu", mfu)):
        if value > 1:
            raise ValueError(f"{label} must be a fraction in (0, 1], got {value!r}")
    if zero_stage not in memory.ZERO_STAGES:
        raise ValueError(f"zero_stage must be one of {memory.ZERO_STAGES}, got {zero_stage!r}")
    if recompute not in memory.RECOMPUTE:
        raise ValueError(f"recompute must be one of {memory.RECOMPUTE}, got {recompute!r}")
    params = spec.total_params()
    limit = usable_memory_fraction * acc.hbm_gb * 1e9
    act_bytes = seq_len * micro_batch * spec.d_model * 2          # one bf16 activation tensor (s, b, h)
    compute_s = 6 * spec.active_params() * global_batch * seq_len / (n_gpus * acc.peak_flops("bf16") * mfu)
    scaleup = acc.scaleup_gbps / 2 * 1e9                          # bytes/s one way
    scaleout = scaleout_gbps * 1e9
    ring = BUSBW_FACTORS["all_reduce"]                            # 2(n-1)/n: bytes sent per byte reduced
    out = []
    for tp in _divisors(gpus_per_node):
        if spec.n_heads % tp or tp > n_gpus:
            continue
        for pp in range(1, spec.n_layers + 1):
            if n_gpus % (tp * pp):
                continue
            dp = n_gpus // (tp * pp)
            if global_batch % (dp * micro_batch):
                continue
            m = global_batch // (dp * micro_batch)
            mem = layout_memory_bytes(params, spec.n_layers, spec.d_model, tp=tp, pp=pp, dp=dp,
                                      seq_len=seq_len, micro_batch=micro_batch, microbatches=m,
                                      n_heads=spec.n_heads, zero_stage=zero_stage, recompute=recompute)
            if sum(mem.values()) > limit:
                continue
            layers = math.ceil(spec.n_layers / pp)
            tp_comm = 4 * ring(tp) * act_bytes * layers * m
            v = virtual_stages if pp > 1 else 1
            pp_comm = (2 * act_bytes * m * v) if pp > 1 else 0.0
            dp_comm = ring(dp) * 2 * params / (tp * pp)
            bubble = (pp - 1) / (v * m)
            step = compute_s * (1 + bubble) + tp_comm / scaleup + (pp_comm + dp_comm) / scaleout
            out.append(Layout(tp, pp, dp, m, params / (tp * pp), mem["weights"], mem["grads"],
                              mem["optimizer"], mem["activations"], tp_comm, pp_comm, dp_comm, bubble, step))
    return sorted(out, key=lambda L: (L.step_time_s, L.memory_bytes))


def _accelerator(gpu: str | hardware.Accelerator) -> hardware.Accelerator:
    if isinstance(gpu, str):
        return hardware.accelerator(gpu)
    if isinstance(gpu, hardware.Accelerator):
        return gpu
    raise ValueError(f"gpu must be a hardware name or a hardware.Accelerator, got {type(gpu).__name__}")


def _divisors(n: int) -> Iterable[int]:
    return [d for d in range(1, n + 1) if n % d == 0]
