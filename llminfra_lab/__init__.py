"""llminfra_lab: the code behind "LLM Infrastructure: An Engineer's Interactive Textbook".

One small module per chapter's concept (see `llminfra_lab.book.chapters()` for the
map). Everything runs on a laptop CPU; a GPU is used when one is present.
"""
from __future__ import annotations

import platform

from llminfra_lab import figures as _figures

__version__ = "0.1.0"
__all__ = ["__version__", "default_device", "describe_environment"]

_figures.use()   # the book's one figure style, for every chapter and lab (llminfra_lab/figures.py)


def default_device() -> str:
    """The device labs run on: "cuda" when a GPU is visible to torch, else "cpu"."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def describe_environment() -> str:
    """One line naming the versions and the device that a lab's outputs came from."""
    import numpy
    import torch

    device = default_device()
    name = torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or platform.machine()
    return (
        f"llminfra_lab {__version__} | python {platform.python_version()} | torch {torch.__version__} | "
        f"numpy {numpy.__version__} | device: {device} ({name})"
    )
