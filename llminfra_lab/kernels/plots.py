"""Figures for chapter 3: the bytes fusion saves, and the grid of programs of a tiled matmul."""
from __future__ import annotations

from llminfra_lab.checks import positive_int
from llminfra_lab.kernels.fusion import softmax_hbm_bytes
from llminfra_lab.kernels.tiling import matmul_tile_intensity, program_tiles

__all__ = ["plot_fusion_bytes", "plot_matmul_tiling_schematic"]


def plot_fusion_bytes(rows: int = 4096, cols_list: list[int] | None = None, dtype_bytes: int = 2, ax=None):
    """Bar chart of MiB moved by unfused and fused softmax of (rows, cols) for several widths."""
    import matplotlib.pyplot as plt
    import numpy as np

    cols_list = cols_list or [512, 1024, 2048, 4096, 8192]
    unfused = [softmax_hbm_bytes(rows, c, False, dtype_bytes) / 2**20 for c in cols_list]
    fused = [softmax_hbm_bytes(rows, c, True, dtype_bytes) / 2**20 for c in cols_list]
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.4))
    x = np.arange(len(cols_list))
    ax.bar(x - 0.2, unfused, 0.4, label="unfused: 5 kernels")
    ax.bar(x + 0.2, fused, 0.4, label="fused: 1 kernel")
    ax.set_xticks(x, [str(c) for c in cols_list])
    ax.set_xlabel(f"columns per row ({rows} rows)")
    ax.set_ylabel("HBM traffic (MiB)")
    ax.set_title(f"Row softmax, {8 * dtype_bytes}-bit elements")
    ax.legend()
    return ax


def plot_matmul_tiling_schematic(m: int = 256, n: int = 384, k: int = 256, block_m: int = 64, block_n: int = 64,
                                 block_k: int = 64, program: tuple[int, int] = (1, 2), k_step: int = 1,
                                 num_warps: int = 4):
    """The CUDA grid / block / thread hierarchy mapped onto a tiled C = A @ B.

    Left: C cut into block_m x block_n tiles, one per program (a CUDA thread block), labelled
    with its (pid_m, pid_n); the highlighted program reads the row panel of A and the column
    panel of B, one block_k step at a time (the darker tiles are step `k_step`). Right: that
    program's tile split among its `num_warps` warps of 32 threads, each thread holding a few
    accumulators (one possible layout: Triton's compiler chooses the real one). Returns the figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    for name, value in (("m", m), ("n", n), ("k", k), ("block_m", block_m), ("block_n", block_n),
                        ("block_k", block_k), ("num_warps", num_warps)):
        positive_int(name, value)
    tiles = program_tiles(m, n, block_m, block_n)
    grid = (tiles[-1]["pid_m"] + 1, tiles[-1]["pid_n"] + 1)
    pm, pn = program
    k_steps = -(-k // block_k)
    if not (0 <= pm < grid[0] and 0 <= pn < grid[1]):
        raise ValueError(f"program must be a (pid_m, pid_n) inside the {grid[0]} x {grid[1]} grid, got {program!r}")
    if not 0 <= k_step < k_steps:
        raise ValueError(f"k_step must be in 0..{k_steps - 1}, got {k_step!r}")

    fig, (ax, az) = plt.subplots(1, 2, figsize=(10, 4.6), gridspec_kw={"width_ratios": [2.3, 1]})
    gap = 0.12 * max(m, n, k)
    cx = k + gap                                   # C sits right of A and below B
    hot, warm, cool = "#e6550d", "#fdae6b", "#deebf7"

    def box(x, y, w, h, face="white", edge="0.3", lw=0.8, text=None, size=7):
        ax.add_patch(Rectangle((x, y), w, h, facecolor=face, edgecolor=edge, lw=lw))
        if text:
            ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size)

    box(0, 0, k, m, cool, lw=1.2)                                            # A (M x K)
    box(cx, -k - gap, n, k, cool, lw=1.2)                                    # B (K x N)
    r0, r1 = tiles[pm * grid[1] + pn]["rows"]
    c0, c1 = tiles[pm * grid[1] + pn]["cols"]
    for s in range(k_steps):                                                 # A's row panel, B's column panel
        k0, k1 = s * block_k, min((s + 1) * block_k, k)
        face = hot if s == k_step else warm
        box(k0, r0, k1 - k0, r1 - r0, face)
        box(cx + c0, -k - gap + k0, c1 - c0, k1 - k0, face)
    for t in tiles:                                                          # C: one tile per program
        (t0, t1), (u0, u1) = t["rows"], t["cols"]
        me = (t["pid_m"], t["pid_n"]) == (pm, pn)
        box(cx + u0, t0, u1 - u0, t1 - t0, hot if me else "white", text=f"({t['pid_m']},{t['pid_n']})")
    ax.text(k / 2, m + 0.06 * gap * 4, f"A  ({m} x {k})", ha="center", va="top", fontsize=9)
    ax.text(cx + n + 0.1 * gap, -gap - k / 2, f"B\n({k} x {n})", ha="left", va="center", fontsize=9)
    ax.text(cx + n / 2, m + 0.06 * gap * 4, f"C  ({m} x {n}): grid of {grid[0]} x {grid[1]} programs",
            ha="center", va="top", fontsize=9)
    ax.text(k / 2, -gap / 2 - k / 2,
            f"program ({pm},{pn}) = one thread block:\nloads its A row panel and\nB column panel in "
            f"{k_steps} steps of {block_k};\nstep {k_step} is the darker pair.\n"
            f"{matmul_tile_intensity(block_m, block_n, 'fp16'):.0f} FLOP/B in fp16",
            ha="center", va="center", fontsize=8)
    ax.set_xlim(-0.02 * cx, cx + n + 1.2 * gap)
    ax.set_ylim(m + gap * 0.3, -k - gap * 1.1)                              # rows grow downward
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title("Grid: which program computes which tile of C", fontsize=10)

    # Right: inside one program (thread block): warps, and threads of warp 0.
    wr = 2 if num_warps % 2 == 0 and num_warps > 1 else 1
    wc = num_warps // wr
    hw, ww = (r1 - r0) / wr, (c1 - c0) / wc
    for w in range(num_warps):
        y, x = (w // wc) * hw, (w % wc) * ww
        az.add_patch(Rectangle((x, y), ww, hw, facecolor=warm if w else hot, edgecolor="0.2", lw=1.2))
        az.text(x + ww / 2, y + hw / 2 if w else y + hw * 0.93, f"warp {w}", ha="center", va="center", fontsize=8)
    tr, tc = 4, 8                                                            # warp 0's 32 threads
    for t in range(32):
        y, x = (t // tc) * hw * 0.85 / tr, (t % tc) * ww / tc
        az.add_patch(Rectangle((x, y), ww / tc, hw * 0.85 / tr, facecolor="none", edgecolor="0.35", lw=0.5))
    per_thread = (r1 - r0) * (c1 - c0) / (32 * num_warps)
    az.set_xlim(0, c1 - c0)
    az.set_ylim(r1 - r0, 0)
    az.set_aspect("equal")
    az.set_xticks([])
    az.set_yticks([])
    az.set_title(f"Program ({pm},{pn}): {num_warps} warps x 32 threads", fontsize=10)
    az.set_xlabel(f"{r1 - r0} x {c1 - c0} tile: about {per_thread:.0f} accumulators per thread\n"
                  "(one possible layout; the compiler picks the real one)", fontsize=8)
    fig.tight_layout()
    return fig
