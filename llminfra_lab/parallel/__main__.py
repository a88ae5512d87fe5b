"""torchrun --nproc-per-node N -m llminfra_lab.parallel {tp,dp} [--json]: chapter 6's experiments
on N processes (NCCL on GPUs, gloo on CPU); see `parallel.experiments`."""
import sys

from llminfra_lab.launch import main
from llminfra_lab.parallel.experiments import EXPERIMENTS

if __name__ == "__main__":
    sys.exit(main("llminfra_lab.parallel", EXPERIMENTS))
