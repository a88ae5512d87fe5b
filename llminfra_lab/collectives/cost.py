"""What a collective costs: bytes per rank, the alpha-beta model, nccl-tests' bandwidths,
and the fabrics (NVLink, InfiniBand, RoCE) that set alpha and beta.

Sending one message of n bytes over a link costs alpha + n * beta seconds: alpha is the
fixed start-up latency, beta = 1 / bandwidth. A collective is a schedule of messages, so
its time is (number of sequential steps) * alpha + (bytes on the busiest link) * beta.

Units: sizes in bytes, times in seconds, bandwidths in bytes/s per direction.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llminfra_lab.checks import positive_int, positive_number
from llminfra_lab.hardware import accelerator

__all__ = [
    "BUSBW_FACTORS", "bytes_sent_per_rank", "algorithm_bandwidth", "bus_bandwidth",
    "ring_all_reduce_time", "ring_reduce_scatter_time", "tree_all_reduce_time",
    "hierarchical_all_reduce_time", "all_reduce_time",
    "Fabric", "FABRICS", "fabric", "fabric_table_markdown", "scale_up_fabric", "scale_up_table_markdown",
]

# ---------------------------------------------------------------------------------------
# The ring's byte count: the one definition of 2 (n - 1) / n
# ---------------------------------------------------------------------------------------

BUSBW_FACTORS: dict[str, Callable[[int], float]] = {
    # Bytes each rank sends in a ring collective, as a fraction of the buffer S, on n ranks;
    # nccl-tests multiplies algbw by the same factor to get busbw, so that a collective's
    # bandwidth compares with the link's peak whatever n is.
    "all_reduce": lambda n: 2 * (n - 1) / n,
    "reduce_scatter": lambda n: (n - 1) / n,
    "all_gather": lambda n: (n - 1) / n,
    "all_to_all": lambda n: (n - 1) / n,
    "broadcast": lambda n: 1.0,
    "reduce": lambda n: 1.0,
}
_RING = ("all_reduce", "reduce_scatter", "all_gather")


def bytes_sent_per_rank(collective: str, size_bytes: float, world_size: int) -> float:
    """Bytes each rank sends in a ring `collective` on an S-byte buffer (even split).

    all_reduce 2 (p - 1) / p * S; reduce_scatter and all_gather (p - 1) / p * S, S being
    the whole buffer. This is the bus-bandwidth factor: busbw is the rate at which each
    rank's link actually moved bytes.
    """
    if collective not in _RING:
        raise KeyError(f"unknown ring collective {collective!r}; known: {sorted(_RING)}")
    _non_negative("size_bytes", size_bytes)
    positive_int("world_size", world_size)
    return BUSBW_FACTORS[collective](world_size) * size_bytes


def algorithm_bandwidth(size_bytes: float, seconds: float) -> float:
    """nccl-tests' algbw: the buffer size S divided by the time t, in bytes/s."""
    _non_negative("size_bytes", size_bytes)
    positive_number("seconds", seconds)
    return size_bytes / seconds


def bus_bandwidth(algbw_Bps: float, collective: str, world_size: int) -> float:
    """nccl-tests' busbw = algbw * factor: 2 (n - 1) / n for all-reduce, (n - 1) / n for
    reduce-scatter, all-gather and all-to-all, 1 for broadcast and reduce."""
    if collective not in BUSBW_FACTORS:
        raise KeyError(f"unknown collective {collective!r}; known: {sorted(BUSBW_FACTORS)}")
    positive_int("world_size", world_size)
    _non_negative("algbw_Bps", algbw_Bps)
    return algbw_Bps * BUSBW_FACTORS[collective](world_size)


# ---------------------------------------------------------------------------------------
# The alpha-beta model
# ---------------------------------------------------------------------------------------

def ring_all_reduce_time(size_bytes: float, world_size: int, alpha_s: float, bandwidth_Bps: float) -> float:
    """Seconds for a ring all-reduce of `size_bytes` over `world_size` ranks.

    2 (p - 1) steps, each sending S / p bytes:  2 (p - 1) alpha + 2 (p - 1) / p * S / B.
    """
    _check_cost_args(size_bytes, world_size, alpha_s, bandwidth_Bps)
    p = world_size
    return 2 * (p - 1) * alpha_s + BUSBW_FACTORS["all_reduce"](p) * size_bytes / bandwidth_Bps


def ring_reduce_scatter_time(size_bytes: float, world_size: int, alpha_s: float, bandwidth_Bps: float) -> float:
    """Seconds for a ring reduce-scatter (or all-gather) of a `size_bytes` buffer.

    p - 1 steps of S / p bytes:  (p - 1) alpha + (p - 1) / p * S / B.
    """
    _check_cost_args(size_bytes, world_size, alpha_s, bandwidth_Bps)
    p = world_size
    return (p - 1) * alpha_s + BUSBW_FACTORS["reduce_scatter"](p) * size_bytes / bandwidth_Bps


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
    positive_int("gpus_per_node", gpus_per_node)
    positive_int("nodes", nodes)
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
# Fabrics: cited bandwidths, assumed latencies
# ---------------------------------------------------------------------------------------

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
    _non_negative("alpha_s", alpha_s)
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


# ---------------------------------------------------------------------------------------
# Checks of this file's public functions
# ---------------------------------------------------------------------------------------

def _non_negative(name: str, value: float) -> None:
    """ValueError unless `value` is a finite real number >= 0 (checks has only > 0)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _check_cost_args(size_bytes: float, world_size: int, alpha_s: float, bandwidth_Bps: float) -> None:
    _non_negative("size_bytes", size_bytes)
    positive_int("world_size", world_size)
    _non_negative("alpha_s", alpha_s)
    positive_number("bandwidth_Bps", bandwidth_Bps)
