"""torchrun --nproc-per-node N -m llminfra_lab.collectives ring [--json]: chapter 4's experiment
on N processes (NCCL on GPUs, gloo on CPU); see `collectives.experiments`."""
import sys

from llminfra_lab.collectives.experiments import EXPERIMENTS
from llminfra_lab.launch import main

if __name__ == "__main__":
    sys.exit(main("llminfra_lab.collectives", EXPERIMENTS))
