"""Schematics of the machine the roofline abstracts: an SM and its warps, and the memory ladder.

Both are drawn from data, so the numbers on the figures are the numbers in this file,
each with the bibliography key of the document it comes from:

- `HOPPER_SM`: the parts of one H100 streaming multiprocessor (Hopper whitepaper):
  four sub-partitions, each with a warp scheduler, a 64 KB slice of the register file,
  FP32/INT32/FP64 lanes and one Tensor Core, sharing 256 KB of L1 / shared memory;
- `H100_MEMORY_LADDER`: capacity and bandwidth of each level a byte can live in, from
  registers to the host, for an H100 SXM in an 8-GPU HGX board. Where the vendor
  publishes no bandwidth (registers, L2) the ladder says so instead of guessing.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["MemoryLevel", "H100_MEMORY_LADDER", "HOPPER_SM", "WARP_SIZE", "memory_ladder_plot", "sm_warp_plot"]

#: Threads per warp on every NVIDIA GPU (CUDA C++ Programming Guide).
WARP_SIZE = 32

#: One Hopper SM, as the H100 whitepaper draws it (nvidia2022hopper): per sub-partition, and shared.
HOPPER_SM = {
    "sm_count_h100_sxm": 132,
    "sub_partitions": 4,
    "per_sub_partition": [
        "warp scheduler (32 threads/clk)", "dispatch unit (32 threads/clk)",
        "register file 16,384 x 32-bit (64 KB)", "32 FP32 + 16 INT32 + 16 FP64 lanes",
        "Tensor Core (4th generation)", "8 LD/ST units, 1 SFU",
    ],
    "shared": ["256 KB L1 data cache / shared memory (up to 228 KB as shared memory)",
               "Tensor Memory Accelerator (TMA)"],
    "source": "nvidia2022hopper",
}


@dataclass(frozen=True)
class MemoryLevel:
    """One rung of the memory ladder: what it holds, how fast it feeds, and where the figures come from."""

    name: str
    capacity_bytes: float | None       # total for the GPU (None: not a fixed number)
    capacity_text: str                 # as the figure prints it
    bandwidth_bytes_per_s: float | None  # None where the vendor publishes no figure
    bandwidth_text: str
    sources: tuple[str, ...]           # keys in references.bib


_SMS = HOPPER_SM["sm_count_h100_sxm"]

H100_MEMORY_LADDER: tuple[MemoryLevel, ...] = (
    MemoryLevel("registers", 256 * 1024 * _SMS, f"256 KB per SM, {_SMS} SMs: about 33 MB", None,
                "not published", ("nvidia2022hopper",)),
    MemoryLevel("shared memory / L1", 256 * 1024 * _SMS, "256 KB per SM (up to 228 KB shared): about 33 MB", None,
                "128 B per clock per SM (32 banks x 4 B)", ("nvidia2022hopper", "nvidia2024cudaguide")),
    MemoryLevel("L2 cache", 50e6, "50 MB, shared by all SMs", None, "not published",
                ("nvidia2022hopper",)),
    MemoryLevel("HBM3", 80e9, "80 GB", 3.35e12, "3.35 TB/s", ("nvidia2022h100",)),
    MemoryLevel("NVLink 4 (7 peer GPUs)", 7 * 80e9, "7 x 80 GB on an HGX board", 900e9,
                "900 GB/s, both directions (450 each way)", ("nvidia2022h100",)),
    MemoryLevel("host over PCIe Gen5", None, "the server's DRAM", 128e9,
                "128 GB/s, both directions (64 each way)", ("nvidia2022h100",)),
)


def memory_ladder_plot(levels: Sequence[MemoryLevel] = H100_MEMORY_LADDER, title: str = "H100 SXM memory ladder",
                       ax=None):
    """Draw the memory ladder: one rung per level, wider further from the SM, labelled with
    capacity, bandwidth (or "not published") and the source keys. Returns the Figure."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    levels = list(levels)
    if not levels:
        raise ValueError("levels must list at least one MemoryLevel")
    for lv in levels:
        if not isinstance(lv, MemoryLevel):
            raise ValueError(f"levels must be MemoryLevel values, got {type(lv).__name__}")
    if ax is None:
        fig, ax = plt.subplots(figsize=(10.0, 0.75 * len(levels) + 1.2))
    else:
        fig = ax.figure
    n = len(levels)
    colors = plt.get_cmap("viridis")
    for i, lv in enumerate(levels):
        y = n - 1 - i
        width = 0.62 + 0.36 * i / max(n - 1, 1)           # rungs widen away from the SM: slower, larger
        x0 = 0.5 - width / 2
        ax.add_patch(FancyBboxPatch((x0, y + 0.1), width, 0.8, boxstyle="round,pad=0.01",
                                    facecolor=colors(0.15 + 0.7 * i / max(n - 1, 1)), alpha=0.35,
                                    edgecolor="0.3"))
        ax.text(0.5, y + 0.62, lv.name, ha="center", va="center", fontsize=9, weight="bold")
        ax.text(0.5, y + 0.32, f"{lv.capacity_text}  |  {lv.bandwidth_text}", ha="center", va="center", fontsize=7)
        ax.text(1.03, y + 0.5, ", ".join(lv.sources), ha="left", va="center", fontsize=6, color="0.4")
    ax.annotate("", xy=(-0.02, 0.1), xytext=(-0.02, n - 0.1),
                arrowprops={"arrowstyle": "->", "color": "0.3"})
    ax.text(-0.04, n / 2, "larger, slower, further from the SM", rotation=90, ha="right", va="center", fontsize=8)
    ax.set_xlim(-0.1, 1.3)
    ax.set_ylim(0, n)
    ax.axis("off")
    ax.set_title(title, fontsize=10)
    return fig


def sm_warp_plot(ax=None):
    """Draw one Hopper SM (four sub-partitions sharing L1 / shared memory) beside one warp:
    32 threads issuing one instruction together (SIMT), and a branch on which they diverge,
    so each side runs with the other side's lanes masked off. Returns the Figure."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    if ax is None:
        fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.6), gridspec_kw={"width_ratios": [1.15, 1.0]})
    else:
        fig, axes = ax.figure, [ax, ax.inset_axes([1.05, 0.0, 0.9, 1.0])]
    sm, warp = axes

    # --- the SM ---------------------------------------------------------------------------
    parts = HOPPER_SM["per_sub_partition"]
    sub_w, sub_h = 0.47, 0.35
    for k in range(HOPPER_SM["sub_partitions"]):
        x, y = 0.02 + (k % 2) * 0.49, 0.56 - (k // 2) * 0.36
        sm.add_patch(Rectangle((x, y), sub_w, sub_h, facecolor="#e8eef7", edgecolor="0.3"))
        sm.text(x + 0.01, y + sub_h - 0.025, f"sub-partition {k}", fontsize=6.5, weight="bold", va="top")
        for j, label in enumerate(parts):
            tint = "#f6c28b" if "Tensor" in label else "#ffffff"
            sm.add_patch(Rectangle((x + 0.015, y + sub_h - 0.09 - j * 0.043), sub_w - 0.03, 0.038,
                                   facecolor=tint, edgecolor="0.6", lw=0.5))
            sm.text(x + 0.025, y + sub_h - 0.071 - j * 0.043, label, fontsize=5.6, va="center")
    for j, label in enumerate(HOPPER_SM["shared"]):
        sm.add_patch(Rectangle((0.02, 0.10 - j * 0.085), 0.96, 0.07, facecolor="#cfe8cf", edgecolor="0.3"))
        sm.text(0.5, 0.135 - j * 0.085, label, ha="center", va="center", fontsize=6.5)
    sm.set_xlim(0, 1)
    sm.set_ylim(-0.01, 0.93)
    sm.axis("off")
    sm.set_title(f"one SM of {HOPPER_SM['sm_count_h100_sxm']} on an H100 SXM ({HOPPER_SM['source']})", fontsize=8)

    # --- one warp in SIMT -----------------------------------------------------------------
    lane_w = 1.0 / WARP_SIZE
    rows = [("ld  r1, [x + tid]", [True] * WARP_SIZE),
            ("if (tid < 20):  r2 = r1 * 2", [t < 20 for t in range(WARP_SIZE)]),
            ("else:           r2 = r1 + 7", [t >= 20 for t in range(WARP_SIZE)]),
            ("st  [y + tid], r2", [True] * WARP_SIZE)]
    for r, (instr, active) in enumerate(rows):
        y = 0.78 - r * 0.2
        warp.text(0.0, y + 0.1, f"{r + 1}. {instr}", fontsize=7, family="monospace")
        for t in range(WARP_SIZE):
            warp.add_patch(Rectangle((t * lane_w, y), lane_w * 0.9, 0.07,
                                     facecolor="#4c72b0" if active[t] else "#dddddd", edgecolor="none"))
    warp.text(0.0, 0.02, f"a warp = {WARP_SIZE} threads (lanes 0..{WARP_SIZE - 1}); one instruction issued for all.\n"
                         "blue: lane active; grey: masked off. Steps 2 and 3 run one after the other:\n"
                         "divergence costs the warp both sides.", fontsize=6.5, va="bottom")
    warp.set_xlim(0, 1)
    warp.set_ylim(0, 0.95)
    warp.axis("off")
    warp.set_title("one warp, single instruction multiple threads (SIMT)", fontsize=8)
    return fig
