"""Shared test set-up.

Triton decides whether to interpret kernels on the CPU when it is first imported, and a
test elsewhere may import it first (torch's FLOP counter pulls it in). On a machine
without a GPU, ask for the interpreter before any test runs, as llminfra_lab.kernels
would, so the kernel tests do not depend on the order the files run in.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
