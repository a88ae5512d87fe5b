"""The five-layer map of LLM infrastructure that the book fills in (chapter 1).

One definition of the layers, with the global and Chinese systems at each, so that the
chapter's table (`stack_table_markdown`) and its schematic (`plots.plot_stack_schematic`)
cannot disagree. Layers are listed from the top (applications) to the bottom (hardware).
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["StackLayer", "STACK", "stack_table_markdown"]


@dataclass(frozen=True)
class StackLayer:
    """One layer of the stack: what it is responsible for and which systems live there."""

    name: str
    role: str                          # what the layer is responsible for
    global_examples: tuple[str, ...]
    chinese_examples: tuple[str, ...]
    chapters: str                      # the book's chapters that cover it


STACK: tuple[StackLayer, ...] = (
    StackLayer("Applications",
               "turning model calls into products: retrieval, agents, tools, evaluation, gateways, safety",
               ("LangChain", "LlamaIndex", "OpenAI Responses API", "MCP"),
               ("Coze", "Dify", "Qwen-Agent"), "17 to 24"),
    StackLayer("Inference and serving",
               "producing tokens at a latency and a price: batching, KV cache, quantization, "
               "speculative decoding, routing",
               ("vLLM", "SGLang", "TensorRT-LLM", "TGI"),
               ("MindIE", "LMDeploy"), "11 to 16"),
    StackLayer("Training",
               "turning data and FLOPs into weights: parallelism, optimizers, mixed precision, "
               "checkpoints, alignment",
               ("Megatron-LM", "DeepSpeed", "FSDP", "torchtitan"),
               ("MindSpeed", "Colossal-AI", "DeepSeek's HAI-LLM"), "5 to 10"),
    StackLayer("Systems software",
               "making the hardware programmable and the cluster one machine: compilers, kernels, "
               "collectives, schedulers",
               ("CUDA", "cuBLAS", "NCCL", "Triton", "ROCm", "Kubernetes", "Slurm"),
               ("CANN", "HCCL", "Hygon DTK"), "3 and 4"),
    StackLayer("Hardware",
               "FLOP/s, memory capacity and bandwidth, and the network between chips",
               ("NVIDIA H100/H200/B200", "AMD MI300X", "Google TPU"),
               ("Huawei Ascend 910B/910C", "Cambricon", "Kunlunxin"), "2 and 4"),
)


def stack_table_markdown() -> str:
    """The stack as a Markdown table (layer, responsibility, global and Chinese examples, chapters)."""
    rows = ["| Layer | What it is responsible for | Global examples | Chinese examples | Chapters |",
            "|---|---|---|---|---|"]
    for layer in STACK:
        rows.append(f"| {layer.name} | {layer.role} | {', '.join(layer.global_examples)} | "
                    f"{', '.join(layer.chinese_examples)} | {layer.chapters} |")
    return "\n".join(rows)
