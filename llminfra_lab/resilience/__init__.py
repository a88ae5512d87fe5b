"""Checkpointing and fault tolerance (chapter 10).

    atomic.py       atomic checkpoints: temp directory, fsync, rename, manifest of SHA-256s;
                    a loader that refuses corrupt or partial checkpoints and falls back
    trainer.py      a trainer that resumes bit for bit (weights, optimizer, RNGs, data position)
    faults.py       the fault-injection campaign: SIGKILL at random moments, resume, prove it
    distributed.py  sharded torch.distributed.checkpoint (resharding on load), async saves, and
                    elastic restart under torchrun --max-restarts
    goodput.py      Young/Daly intervals, goodput by formula and by simulation, silent-data-
                    corruption checks (checksums, recomputation), straggler detection
    failures.py     Llama 3's interruption table as data, printed and recomputed percentages
    plots.py        the schematic of an atomic save and the data plots
"""
from __future__ import annotations

from llminfra_lab.resilience.atomic import (
    MANIFEST,
    checkpoint_dir,
    list_checkpoints,
    load_latest,
    manifest_problem,
    prune_checkpoints,
    save_checkpoint,
    sha256_bytes,
    state_digest,
    verify_checkpoint,
    write_file_atomic,
)
from llminfra_lab.resilience.distributed import dcp_load_rank, dcp_save_rank, run_elastic, sharded_matrix
from llminfra_lab.resilience.failures import (
    LLAMA3_INTERRUPTIONS,
    LLAMA3_RUN,
    Interruption,
    hardware_share,
    interruption_table,
    mtbf_hours,
)
from llminfra_lab.resilience.faults import fault_injection_campaign, flip_byte, load_campaign_result, trainer_command
from llminfra_lab.resilience.goodput import (
    abft_matmul_check,
    daly_interval,
    detect_stragglers,
    expected_goodput,
    flip_bit,
    redundant_check,
    simulate_goodput,
    simulate_step_times,
    young_interval,
)
from llminfra_lab.resilience.plots import (
    plot_atomic_save_schematic,
    plot_goodput_curve,
    plot_llama3_interruptions,
    plot_step_times,
)
from llminfra_lab.resilience.trainer import (
    TrainerConfig,
    final_weights,
    read_events,
    restore_training_state,
    run_training,
    training_state,
)

__all__ = [
    "MANIFEST", "checkpoint_dir", "list_checkpoints", "load_latest", "manifest_problem", "prune_checkpoints", "save_checkpoint",
    "sha256_bytes", "state_digest", "verify_checkpoint", "write_file_atomic",
    "fault_injection_campaign", "flip_byte", "load_campaign_result", "trainer_command",
    "dcp_load_rank", "dcp_save_rank", "run_elastic", "sharded_matrix",
    "LLAMA3_INTERRUPTIONS", "LLAMA3_RUN", "Interruption", "hardware_share", "interruption_table", "mtbf_hours",
    "abft_matmul_check", "daly_interval", "detect_stragglers", "expected_goodput", "flip_bit", "redundant_check",
    "simulate_goodput", "simulate_step_times", "young_interval",
    "plot_atomic_save_schematic", "plot_goodput_curve", "plot_llama3_interruptions", "plot_step_times",
    "TrainerConfig", "final_weights", "read_events", "restore_training_state", "run_training", "training_state",
]
