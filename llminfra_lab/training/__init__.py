"""The training stack of the tiny GPT (chapter 5): optimizer, loop, checkpoints, data, scaling laws.

Read the files in this order; each is what a large-model training run does, at toy size:

    optim.py        AdamW written out (`adamw_step`; it equals torch.optim.AdamW bit for bit
                    in float32), the warm-up + cosine schedule, clipping by global norm
    loop.py         micro-batches with gradient accumulation, optional BF16 autocast,
                    clipping, a schedule, a history of the loss
    checkpoints.py  the shipped "target" and "draft" checkpoints: recipes, corpus, training;
                    `python -m llminfra_lab.training --preset target` rebuilds one on a CPU
                    (bit for bit only on the same machine type and software)
    dedup.py        exact (SHA-256 of normalised text) and near-duplicate (MinHash + LSH)
    accounting.py   bit layouts of FP32/BF16/FP16/FP8 and bytes per parameter of precision
                    recipes, through `memory.model_state_bytes` (the one formula)
    scaling.py      fit L(N, D) = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022) and derive
                    the compute-optimal N and D in closed form under C = 6 N D
    plots.py        the chapter's figures: two schematics (bit layouts, a BPE merge table)
                    and the data plots

One BPE merge step, the tokenizer's core, is `tokenizer.bpe_merge_step` (the spine).
"""
from __future__ import annotations

from llminfra_lab.economics import training_flops
from llminfra_lab.training.accounting import FLOAT_FORMATS, PRECISION_RECIPES, bytes_per_param, float_format, recipe_bytes
from llminfra_lab.training.checkpoints import (
                                              CHECKPOINT_DIR,
                                              PRESETS,
                                              CheckpointRecipe,
                                              answer_arithmetic,
                                              arithmetic_accuracy,
                                              arithmetic_prompt,
                                              build_corpus,
                                              checkpoint_history,
                                              compare_bpe_with_hf,
                                              story_perplexity,
                                              train_preset,
)
from llminfra_lab.training.dedup import (
                                              exact_dedup,
                                              lsh_banding_for,
                                              lsh_candidate_probability,
                                              minhash_dedup,
                                              minhash_signature,
                                              shingles,
)
from llminfra_lab.training.loop import TrainConfig, evaluate_loss, train, train_step
from llminfra_lab.training.optim import AdamW, adamw_step, clip_grad_norm, lr_at
from llminfra_lab.training.plots import (
                                              plot_bpe_merges,
                                              plot_compute_frontier,
                                              plot_float_formats,
                                              plot_loss_curves,
                                              plot_lr_schedule,
                                              plot_lsh_curve,
                                              plot_scaling_fit,
)
from llminfra_lab.training.scaling import (
                                              BESIROGLU_REFIT,
                                              GOPHER_FLOPS,
                                              HOFFMANN_APPROACH3,
                                              HOFFMANN_APPROACH3_UNROUNDED,
                                              SWEEP_LR_TIMES_WIDTH,
                                              SWEEP_STEPS,
                                              SWEEP_WIDTHS,
                                              ChinchillaLaw,
                                              compute_optimal,
                                              compute_optimal_bruteforce,
                                              fit_chinchilla,
                                              load_scaling_sweep,
                                              sweep_data,
                                              sweep_run,
)

__all__ = [
    # optimizer, schedule, clipping
    "adamw_step", "AdamW", "lr_at", "clip_grad_norm",
    # the loop
    "TrainConfig", "train_step", "train", "evaluate_loss",
    # shipped checkpoints
    "CheckpointRecipe", "PRESETS", "build_corpus", "compare_bpe_with_hf", "train_preset", "arithmetic_prompt",
    "answer_arithmetic", "arithmetic_accuracy", "story_perplexity", "CHECKPOINT_DIR", "checkpoint_history",
    # deduplication
    "exact_dedup", "shingles", "minhash_signature", "lsh_candidate_probability", "lsh_banding_for",
    "minhash_dedup",
    # accounting (training_flops is economics', re-exported for the lab)
    "training_flops", "FLOAT_FORMATS", "float_format", "PRECISION_RECIPES", "recipe_bytes", "bytes_per_param",
    # scaling laws
    "ChinchillaLaw", "HOFFMANN_APPROACH3", "HOFFMANN_APPROACH3_UNROUNDED", "BESIROGLU_REFIT",
    "GOPHER_FLOPS", "compute_optimal", "compute_optimal_bruteforce", "fit_chinchilla",
    "load_scaling_sweep", "sweep_run", "sweep_data", "SWEEP_WIDTHS", "SWEEP_STEPS", "SWEEP_LR_TIMES_WIDTH",
    # figures
    "plot_float_formats", "plot_bpe_merges", "plot_lr_schedule", "plot_loss_curves", "plot_scaling_fit",
    "plot_compute_frontier", "plot_lsh_curve",
]
