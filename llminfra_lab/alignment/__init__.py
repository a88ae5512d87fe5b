"""Alignment: SFT, reward models, PPO, DPO and GRPO, on the book's tiny GPT.

`losses` holds each objective as its paper writes it (SFT with a loss mask, the
Bradley-Terry reward-model loss, GAE, the KL-shaped reward and clipped surrogate of
PPO, DPO, GRPO's group advantages and k3 KL estimator). `rl` holds the task (two-digit
addition with a zero-padded first operand, "037+58=", a format the shipped checkpoint half knows), rollouts, and
the SFT, DPO and GRPO trainers. `plots` draws the RL loop schematic and the curves;
`load_results` reads the shipped results of `benchmarks/alignment_grpo_dpo.py`.
"""
from __future__ import annotations

from .losses import (
                     bradley_terry_loss,
                     dpo_loss,
                     gae,
                     group_advantages,
                     grpo_loss,
                     k3_kl,
                     kl_penalized_rewards,
                     masked_mean,
                     ppo_clip_loss,
                     sft_loss,
                     value_loss,
)
from .plots import RESULTS_PATH, load_results, plot_method_comparison, plot_rl_loop_schematic, plot_training_curves
from .rl import (
                     RLConfig,
                     Rollout,
                     dpo_train,
                     grpo_train,
                     preference_pairs,
                     sample_group,
                     sequence_logprobs,
                     sft_train,
                     task_accuracy,
                     task_prompt,
                     task_split,
)

__all__ = [
    "sft_loss", "bradley_terry_loss", "gae", "kl_penalized_rewards", "ppo_clip_loss", "value_loss", "dpo_loss",
    "group_advantages", "k3_kl", "grpo_loss", "masked_mean",
    "task_prompt", "task_split", "Rollout", "sample_group", "sequence_logprobs", "task_accuracy",
    "RLConfig", "grpo_train", "preference_pairs", "dpo_train", "sft_train",
    "RESULTS_PATH", "load_results", "plot_rl_loop_schematic", "plot_training_curves", "plot_method_comparison",
]
