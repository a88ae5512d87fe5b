"""The chapter's schematics and figures, drawn from the module's own functions."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import Rectangle

from .medusa import MEDUSA_TREE, tree_attention_mask
from .sampling import expected_tokens_per_step

__all__ = ["plot_draft_verify_schematic", "plot_tree_mask", "plot_expected_tokens"]


def plot_draft_verify_schematic(gamma: int = 4, accepted: int = 2):
    """Two rounds of draft-and-verify: gamma drafted tokens, `accepted` kept, one from the target."""
    if not isinstance(gamma, int) or gamma < 1 or not isinstance(accepted, int) or not 0 <= accepted <= gamma:
        raise ValueError(f"need gamma >= 1 and 0 <= accepted <= gamma, got {gamma!r}, {accepted!r}")
    fig, ax = plt.subplots(figsize=(9, 2.8))
    colours = {"prefix": "#d9d9d9", "draft": "#9ecae1", "ok": "#74c476", "no": "#fb6a4a", "target": "#fdae6b"}
    for row, label in ((2, "draft model\n(gamma passes)"), (1, "target model\n(1 pass)"), (0, "output")):
        ax.text(-0.3, row + 0.4, label, ha="right", va="center", fontsize=9)
    for i in range(3):
        for row in (0, 1, 2):
            ax.add_patch(Rectangle((i, row + 0.1), 0.9, 0.6, color=colours["prefix"]))
    for j in range(gamma):
        x = 3 + j
        ax.add_patch(Rectangle((x, 2.1), 0.9, 0.6, color=colours["draft"]))
        ax.text(x + 0.45, 2.4, f"x{j + 1}", ha="center", va="center", fontsize=9)
        kind = "ok" if j < accepted else ("no" if j == accepted else "prefix")
        if kind != "prefix":
            ax.add_patch(Rectangle((x, 1.1), 0.9, 0.6, color=colours[kind]))
            ax.text(x + 0.45, 1.4, "accept" if kind == "ok" else "reject", ha="center", va="center", fontsize=8)
    for j in range(accepted):
        ax.add_patch(Rectangle((3 + j, 0.1), 0.9, 0.6, color=colours["ok"]))
        ax.text(3.45 + j, 0.4, f"x{j + 1}", ha="center", va="center", fontsize=9)
    x = 3 + accepted
    ax.add_patch(Rectangle((x, 0.1), 0.9, 0.6, color=colours["target"]))
    ax.text(x + 0.45, 0.4, "y" if accepted < gamma else "bonus", ha="center", va="center", fontsize=8)
    ax.annotate("", xy=(3 + gamma, 1.85), xytext=(3, 1.85), arrowprops=dict(arrowstyle="<->"))
    ax.set_xlim(-3, 4 + gamma)
    ax.set_ylim(0, 3)
    ax.axis("off")
    ax.set_title(f"One draft-and-verify step: gamma = {gamma} drafts, {accepted} accepted, "
                 f"{accepted + 1} tokens emitted for one target pass")
    return fig


def plot_tree_mask(tree: list[tuple[int, ...]] | None = None):
    """The tree attention mask of a Medusa candidate tree (rows: queries, columns: keys)."""
    tree = MEDUSA_TREE if tree is None else tree
    mask = tree_attention_mask(tree)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.imshow(mask.numpy(), cmap="Greens", vmin=0, vmax=1.3)
    labels = ["-".join(str(r) for r in p) for p in tree]
    ax.set_xticks(range(len(tree)), labels, rotation=90, fontsize=8)
    ax.set_yticks(range(len(tree)), labels, fontsize=8)
    ax.set_xlabel("key: tree node (ranks along its path)")
    ax.set_ylabel("query: tree node")
    ax.set_title("Tree attention: each candidate sees only its ancestors")
    return fig


def plot_expected_tokens(measured: list[tuple[float, int, float]] | None = None, gammas=(1, 2, 4, 8)):
    """Leviathan's E[tokens per target pass] against alpha, one curve per gamma, with measured
    points (alpha, gamma, tokens per pass) on top."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    alphas = [i / 100 for i in range(0, 100)]
    for g in gammas:
        ax.plot(alphas, [expected_tokens_per_step(a, g) for a in alphas], label=f"gamma = {g}")
    for alpha, g, tpp in measured or []:
        ax.plot([alpha], [tpp], "k^", ms=7)
        ax.annotate(f"measured, gamma={g}", (alpha, tpp), textcoords="offset points", xytext=(-100, 4), fontsize=8)
    ax.set_xlabel("acceptance rate alpha")
    ax.set_ylabel("tokens per target forward pass")
    ax.set_title("(1 - alpha^(gamma+1)) / (1 - alpha)")
    ax.legend()
    ax.grid(alpha=0.3)
    return fig
