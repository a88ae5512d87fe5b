"""The chapter's figures: the RL loop schematic and the curves of the shipped runs."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from llminfra_lab.shipped import ASSETS, load_json

__all__ = ["RESULTS_PATH", "load_results", "plot_rl_loop_schematic", "plot_training_curves", "plot_method_comparison"]

RESULTS_PATH = ASSETS / "alignment_results.json"


def load_results(path: str | Path | None = None) -> dict:
    """The shipped results of benchmarks/alignment_grpo_dpo.py: {"task", "runs": {name: history}, ...}."""
    return load_json(RESULTS_PATH.name, path, made_by="benchmarks/alignment_grpo_dpo.py")


def plot_rl_loop_schematic(ax: Axes | None = None) -> Axes:
    """The RL loop of TRL, OpenRLHF and verl: the generation engine samples, rewards and the
    reference score, the trainer updates, and the new weights are synced back to the engine."""
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 4.2))
    boxes = {
        "prompts": (0.02, 0.62, "prompts\n(batch of questions)", "#eeeeee"),
        "engine": (0.27, 0.62, "generation engine\n(vLLM / SGLang):\nG answers per prompt", "#cfe2ff"),
        "reward": (0.55, 0.62, "reward\nrule-based verifier\nor reward model", "#ffe8b3"),
        "ref": (0.55, 0.14, "reference policy\n(frozen): log pi_ref\nfor the KL term", "#e2e2e2"),
        "trainer": (0.27, 0.14, "trainer (FSDP /\nMegatron / DeepSpeed):\nadvantages, loss, step", "#d4f1d4"),
        "sync": (0.02, 0.14, "weight sync\n(NCCL broadcast or\nreshard in place)", "#f8d0d0"),
    }
    w, h = 0.22, 0.26
    for x, y, text, color in boxes.values():
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.01", fc=color, ec="black", lw=1))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=8.5)
    arrows = [((0.24, 0.75), (0.27, 0.75)), ((0.49, 0.75), (0.55, 0.75)),
              ((0.66, 0.62), (0.49, 0.40)), ((0.55, 0.27), (0.49, 0.27)),
              ((0.27, 0.27), (0.24, 0.27)), ((0.13, 0.40), (0.30, 0.62))]
    for start, end in arrows:
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, lw=1.2))
    ax.text(0.79, 0.50, "answers +\nrewards", fontsize=8, ha="left")
    ax.text(0.80, 0.80, "one step = generate,\nscore, update, sync;\ngeneration is most\nof the time", fontsize=8,
            ha="left", va="center", style="italic")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    ax.set_title("The RL loop of LLM post-training")
    return ax


def plot_training_curves(results: dict, fig: Figure | None = None) -> Figure:
    """Three panels from the shipped GRPO run: mean reward of the sampled answers, the k3 KL
    to the reference per token, and held-out greedy accuracy (with +- 1 standard error)."""
    run = results["runs"]["grpo"]
    fig = fig or plt.figure(figsize=(11, 3.2))
    axes = fig.subplots(1, 3)
    axes[0].plot(run["step"], _smooth(run["reward"], 10), color="C0")
    axes[0].set_title("GRPO: mean reward of samples")
    axes[1].plot(run["step"], _smooth(run["kl"], 10), color="C3")
    axes[1].set_title("k3 KL to reference (per token)")
    for name, color in (("grpo", "C0"), ("dpo", "C1"), ("sft", "C2")):
        r = results["runs"].get(name)
        if r:
            axes[2].errorbar(r["eval_step"], r["accuracy"], yerr=r["stderr"], color=color, label=name.upper(),
                             capsize=2, marker="o", ms=3)
    axes[2].set_title("held-out accuracy (greedy)")
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_method_comparison(results: dict, ax: Axes | None = None) -> Axes:
    """Bars: held-out accuracy before training and after SFT, DPO and GRPO, +- 2 standard errors."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.2))
    names = ["before"] + [n for n in ("sft", "dpo", "grpo") if n in results["runs"]]
    acc = [results["runs"]["grpo"]["accuracy"][0]] + [results["runs"][n]["accuracy"][-1] for n in names[1:]]
    err = [results["runs"]["grpo"]["stderr"][0]] + [results["runs"][n]["stderr"][-1] for n in names[1:]]
    ax.bar(range(len(names)), acc, yerr=[2 * e for e in err], capsize=4, color=["#999999", "C2", "C1", "C0"][:len(names)])
    for i, a in enumerate(acc):
        ax.text(i, a + 0.03, f"{100 * a:.1f}%", ha="center", fontsize=9)
    ax.set_xticks(range(len(names)), [n.upper() if n != "before" else "before" for n in names])
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("held-out accuracy")
    ax.set_title(f"{results['n_heldout']} held-out problems, bars +- 2 s.e.")
    return ax


def _smooth(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out
