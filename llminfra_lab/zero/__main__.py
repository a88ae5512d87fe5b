"""torchrun --nproc-per-node N -m llminfra_lab.zero compare [--json]: chapter 7's experiment on
N processes (NCCL on GPUs, gloo on CPU); see `zero.experiments`."""
import sys

from llminfra_lab.launch import main
from llminfra_lab.zero.experiments import EXPERIMENTS

if __name__ == "__main__":
    sys.exit(main("llminfra_lab.zero", EXPERIMENTS))
