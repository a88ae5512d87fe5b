"""Chapter 11's figures: prefill and decode on the roofline, decode intensity against batch,
KV cache per token, the split-KV schematic, static against continuous batching, and the
shipped CPU latency measurements. Each returns a matplotlib Figure."""
from __future__ import annotations

from collections.abc import Sequence

from llminfra_lab import hardware, memory, roofline
from llminfra_lab.catalog import model_spec
from llminfra_lab.checks import positive_int
from llminfra_lab.inference.cost import attention_kind, decode_cost, prefill_cost
from llminfra_lab.inference.flash_decoding import split_bounds
from llminfra_lab.shipped import load_json

__all__ = ["load_bench", "plot_phase_roofline", "plot_decode_intensity", "plot_kv_per_token",
           "plot_split_kv_schematic", "plot_batching_schematic", "plot_latency_bench", "batching_timelines"]

_KIND_COLORS = {"MHA": "tab:red", "MQA": "tab:green", "GQA": "tab:blue", "MLA": "tab:purple"}


def load_bench() -> dict:
    """The CPU measurements benchmarks/bench_inference.py shipped (llminfra_lab/assets/inference_bench.json)."""
    return load_json("inference_bench.json", made_by="benchmarks/bench_inference.py")


def plot_phase_roofline(model: str = "llama-3-70b", accelerator: str = "H100-SXM", prompt: int = 2048,
                        context: int = 2048, batches: Sequence[int] = (1, 16, 64, 256)):
    """Chapter 2's roofline with one prefill (batch 1, `prompt` tokens) and decode steps at
    `batches` (each sequence with `context` cached tokens) placed on `accelerator`."""
    kernels = [prefill_cost(model, 1, prompt).kernel]
    kernels[0] = roofline.KernelCost(f"prefill 1x{prompt}", kernels[0].flops, kernels[0].bytes)
    for b in batches:
        k = decode_cost(model, b, context).kernel
        kernels.append(roofline.KernelCost(f"decode b={b}", k.flops, k.bytes))
    fig = roofline.roofline_plot(accelerators=(accelerator,), kernels=kernels, on=accelerator,
                                 intensity_range=(0.5, 20000.0))
    fig.axes[0].set_title(f"{model}, BF16: prefill and decode steps on the {accelerator} roofline "
                          f"(decode context {context:,})", fontsize=9)
    return fig


def plot_decode_intensity(model: str = "llama-3-70b", contexts: Sequence[int] = (128, 4096, 32768),
                          accelerators: Sequence[str] = ("A100-SXM-80GB", "H100-SXM", "B200"),
                          batches: Sequence[int] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048), ax=None):
    """Decode-step arithmetic intensity against batch size, one line per context length, with
    the chips' BF16 ridge points: short contexts cross the ridge, long ones level off below it."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4.2))
    else:
        fig = ax.figure
    for ctx in contexts:
        ax.plot(batches, [decode_cost(model, b, ctx).intensity for b in batches], "o-", ms=3,
                label=f"context {ctx:,} tokens")
    for name in accelerators:
        ridge = hardware.accelerator(name).ridge_point("bf16")
        ax.axhline(ridge, ls=":", color="0.35", lw=1)
        ax.text(batches[0], ridge * 1.07, f"{name} ridge {ridge:.0f}", fontsize=7, color="0.3")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("decode batch (sequences per step)")
    ax.set_ylabel("FLOP per byte of HBM traffic")
    ax.set_title(f"{model} decode step, BF16 weights and KV cache", fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def plot_kv_per_token(names: Sequence[str] = ("llama-2-7b", "gemma-2b", "llama-3-8b", "llama-2-70b", "llama-3-70b",
                                              "qwen2.5-72b", "llama-3-405b", "deepseek-v3"),
                      dtype: str = "bf16", ax=None):
    """Bar chart of KV cache KiB per token, coloured by attention kind (MHA, MQA, GQA, MLA)."""
    import matplotlib.pyplot as plt

    if not names:
        raise ValueError("names must list at least one catalog model")
    specs = [model_spec(n) for n in names]
    if ax is None:
        fig, ax = plt.subplots(figsize=(7.5, 3.8))
    else:
        fig = ax.figure
    values = [memory.kv_cache_bytes_per_token(s, dtype) / 1024 for s in specs]
    kinds = [attention_kind(s) for s in specs]
    bars = ax.bar(range(len(specs)), values, color=[_KIND_COLORS[k] for k in kinds])
    for bar, value, kind in zip(bars, values, kinds):
        ax.text(bar.get_x() + bar.get_width() / 2, value * 1.02, f"{value:.0f}\n{kind}", ha="center", fontsize=7)
    ax.set_xticks(range(len(specs)), [s.name for s in specs], rotation=25, ha="right", fontsize=8)
    ax.set_ylabel(f"KV cache per token, KiB ({dtype})")
    ax.set_ylim(0, max(values) * 1.25)
    ax.set_title("Bytes each token leaves in the cache, from the catalog's configurations", fontsize=9)
    return fig


def plot_split_kv_schematic(length: int = 16, n_splits: int = 4, ax=None):
    """Flash-decoding drawn: one query, the KV cache cut into chunks, a partial (out, lse) per
    chunk computed in parallel, and the merges that join them."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, Rectangle

    bounds = split_bounds(length, n_splits)
    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 3.6))
    else:
        fig = ax.figure
    colors = plt.get_cmap("tab10").colors
    ax.add_patch(Rectangle((-2.6, 4.0), 1.2, 0.8, color="0.3"))
    ax.text(-2.0, 5.05, "query q\n(1 token)", ha="center", fontsize=8)
    for i, (s, e) in enumerate(bounds):
        for t in range(s, e):
            ax.add_patch(Rectangle((t, 4.0), 0.9, 0.8, color=colors[i % 10], alpha=0.75))
        mid = (s + e - 1) / 2 + 0.45
        ax.text(mid, 5.0, f"chunk {i}: keys {s}-{e - 1}", ha="center", fontsize=7)
        ax.add_patch(Rectangle((mid - 1.2, 2.0), 2.4, 0.8, color=colors[i % 10], alpha=0.35))
        ax.text(mid, 2.4, f"(o{i}, lse{i})", ha="center", va="center", fontsize=8)
        ax.add_patch(FancyArrowPatch((mid, 3.95), (mid, 2.85), arrowstyle="->", mutation_scale=10))
        ax.add_patch(FancyArrowPatch((mid, 1.95), (length / 2, 0.85), arrowstyle="->", mutation_scale=10,
                                     color="0.4"))
    ax.add_patch(Rectangle((length / 2 - 3.2, 0.0), 6.4, 0.8, color="0.85"))
    ax.text(length / 2, 0.4, "merge_partials: weights exp(lse_i - lse), exact", ha="center", va="center",
            fontsize=8)
    ax.text(length + 0.5, 4.4, f"KV cache\n{length} tokens", fontsize=8, va="center")
    ax.text(length + 0.5, 2.4, "one thread block\nper chunk, in parallel", fontsize=8, va="center")
    ax.set_xlim(-3, length + 4)
    ax.set_ylim(-0.3, 5.6)
    ax.axis("off")
    ax.set_title(f"Flash-decoding: {len(bounds)} chunks of the KV cache, merged by log-sum-exp", fontsize=9)
    return fig


def batching_timelines(output_lens: Sequence[int], slots: int) -> dict[str, list[list[int]]]:
    """Which request each of `slots` batch slots runs at each decode step, under static
    batching (a batch waits for its longest member) and iteration-level (continuous)
    batching (a finished request's slot takes the next waiting request at the next step).
    Requests are all waiting at step 0, in order; -1 marks an idle slot."""
    if not output_lens:
        raise ValueError("output_lens must list at least one request")
    for i, n in enumerate(output_lens):
        positive_int(f"output_lens[{i}]", n)
    positive_int("slots", slots)
    static: list[list[int]] = [[] for _ in range(slots)]
    for first in range(0, len(output_lens), slots):                # one batch after another
        group = list(range(first, min(first + slots, len(output_lens))))
        longest = max(output_lens[r] for r in group)
        for s in range(slots):
            r = group[s] if s < len(group) else -1
            static[s] += [r if r >= 0 and t < output_lens[r] else -1 for t in range(longest)]
    continuous: list[list[int]] = [[] for _ in range(slots)]
    waiting, left = list(range(len(output_lens))), [0] * slots
    running = [-1] * slots
    while waiting or any(r >= 0 for r in running):
        for s in range(slots):
            if running[s] < 0 and waiting:
                running[s] = waiting.pop(0)
                left[s] = output_lens[running[s]]
        for s in range(slots):
            continuous[s].append(running[s])
            if running[s] >= 0:
                left[s] -= 1
                if left[s] == 0:
                    running[s] = -1
    return {"static": static, "continuous": continuous}


def plot_batching_schematic(output_lens: Sequence[int] = (6, 2, 3, 8, 2, 4, 3, 5), slots: int = 4):
    """Two Gantt charts of the same requests: static batching (idle slots in grey) above
    continuous batching, with the steps each needs."""
    import matplotlib.pyplot as plt

    lines = batching_timelines(output_lens, slots)
    fig, axes = plt.subplots(2, 1, figsize=(8, 3.8), sharex=True)
    colors = plt.get_cmap("tab10").colors
    for ax, policy in zip(axes, ("static", "continuous")):
        rows = lines[policy]
        for s, row in enumerate(rows):
            for t, r in enumerate(row):
                color = "0.88" if r < 0 else colors[r % 10]
                ax.barh(s, 1, left=t, color=color, edgecolor="white")
                if r >= 0:
                    ax.text(t + 0.5, s, f"R{r}", ha="center", va="center", fontsize=6)
        busy = sum(r >= 0 for row in rows for r in row)
        steps = len(rows[0])
        ax.set_yticks(range(slots), [f"slot {s}" for s in range(slots)], fontsize=7)
        ax.set_title(f"{policy} batching: {steps} decode steps, {busy / (steps * slots):.0%} of slot-steps busy",
                     fontsize=9)
    axes[-1].set_xlabel("decode step")
    fig.tight_layout()
    return fig


def plot_latency_bench(results: dict | None = None):
    """The shipped CPU measurements: TTFT against prompt length (cached generation), and time
    per output token with and without the KV cache against the position in the sequence."""
    import matplotlib.pyplot as plt

    results = results if results is not None else load_bench()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    prompts = [r["prompt"] for r in results["ttft"]]
    left.plot(prompts, [r["ttft_ms"] for r in results["ttft"]], "o-", label="TTFT (prefill + first token)")
    left.plot(prompts, [r["tpot_ms"] for r in results["ttft"]], "s-", label="TPOT (decode)")
    left.set_xlabel("prompt tokens")
    left.set_ylabel("milliseconds")
    left.set_title("KV-cached generation, batch 1", fontsize=9)
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    for key, label in (("cached_step_ms", "with KV cache"), ("uncached_step_ms", "without: rerun all tokens")):
        right.plot(results["steps"]["position"], results["steps"][key], label=label)
    right.set_xlabel("tokens in the sequence")
    right.set_ylabel("ms per generated token")
    right.set_title("Per-token step time, batch 1", fontsize=9)
    right.legend(fontsize=8)
    right.grid(alpha=0.3)
    fig.suptitle(f"Tiny GPT 'target' on {results['machine']}", fontsize=9)
    fig.tight_layout()
    return fig
