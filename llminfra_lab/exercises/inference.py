"""Lab 11 (inference fundamentals): implement-it tasks and exercises."""
from __future__ import annotations

import math
import random

import torch

from llminfra_lab import hardware, memory
from llminfra_lab.attention import merge_partials
from llminfra_lab.catalog import model_spec
from llminfra_lab.inference import chunk_attention, greedy_uncached, latency_metrics, max_concurrent_requests
from llminfra_lab.labkit import exercise, task
from llminfra_lab.model import GPT, tiny_config

# ----------------------------------------------------------------------------- implement-it tasks


def _greedy_cases(rng: random.Random) -> list[tuple]:
    cases = []
    for _ in range(4):
        seed = rng.randrange(10_000)
        gpt = GPT(tiny_config("test"), seed=seed).eval()
        g = torch.Generator().manual_seed(seed)
        idx = torch.randint(0, 64, (rng.choice([1, 2]), rng.randint(1, 8)), generator=g)
        cases.append((gpt, idx, rng.randint(2, 6)))
    return cases


@torch.no_grad()
def _greedy_first_position(model, idx, max_new_tokens):
    out = idx
    for _ in range(max_new_tokens):
        out = torch.cat([out, model(out)[:, 0, :].argmax(-1, keepdim=True)], dim=1)   # position 0's prediction
    return out


task(
    "inference.greedy_uncached",
    "Greedy generation without a KV cache: starting from idx (batch, prompt) token ids, repeat max_new_tokens "
    "times: run model(out) over the whole sequence so far (logits (batch, t, vocab)), take the argmax of the LAST "
    "position's logits, and append it. Return the (batch, prompt + max_new_tokens) tensor.",
    reference=greedy_uncached,
    cases=_greedy_cases,
    mistake=_greedy_first_position,
)


def _split_reference(q, k, v, n_splits):
    size = math.ceil(k.shape[-2] / n_splits)
    out = lse = None
    for start in range(0, k.shape[-2], size):
        part, part_lse = chunk_attention(q, k[..., start:start + size, :], v[..., start:start + size, :])
        out, lse = (part, part_lse) if out is None else merge_partials(out, lse, part, part_lse)
    return out


def _split_mean(q, k, v, n_splits):
    size = math.ceil(k.shape[-2] / n_splits)
    parts = [chunk_attention(q, k[..., s:s + size, :], v[..., s:s + size, :])[0] for s in range(0, k.shape[-2], size)]
    return sum(parts) / len(parts)                                   # ignores how much each chunk's keys weigh


def _split_cases(rng: random.Random) -> list[tuple]:
    cases = []
    for _ in range(10):
        g = torch.Generator().manual_seed(rng.randrange(2**31))
        heads, length, d = rng.choice([1, 2, 4]), rng.randint(2, 40), rng.choice([4, 8, 16])
        q = torch.randn(heads, 1, d, generator=g)
        cases.append((q, torch.randn(heads, length, d, generator=g) * 2, torch.randn(heads, length, d, generator=g),
                      rng.randint(2, 6)))
    return cases


task(
    "inference.split_kv",
    "Flash-decoding: q (heads, 1, d) against a cache k, v (heads, length, d). Cut the cache into chunks of "
    "ceil(length / n_splits) tokens; for each chunk call chunk_attention(q, k_chunk, v_chunk) -> (out, lse) and "
    "fold it into a running (out, lse) with merge_partials. Return the final out (heads, 1, d): attention over "
    "the whole cache.",
    reference=_split_reference,
    cases=_split_cases,
    mistake=_split_mean,
)


def _metrics_reference(times, batch):
    m = latency_metrics(times, batch)
    return [m.ttft_s, m.tpot_s, m.throughput_tok_s]


def _metrics_all_tokens(times, batch):
    n = len(times) - 1
    return [times[1] - times[0], (times[-1] - times[0]) / n, batch * n / (times[-1] - times[0])]


def _metrics_cases(rng: random.Random) -> list[tuple]:
    cases = []
    for _ in range(10):
        t, times = rng.uniform(0, 100), []
        times.append(t)
        t += rng.uniform(0.05, 2.0)                                   # prefill is slow
        times.append(t)
        for _ in range(rng.randint(1, 30)):
            t += rng.uniform(0.005, 0.1)
            times.append(t)
        cases.append((times, rng.choice([1, 4, 32])))
    return cases


task(
    "inference.latency_metrics",
    "times = [start, token 1 ready, ..., token n ready] (seconds) of one request of `batch` sequences. Return "
    "[TTFT, TPOT, throughput]: TTFT = t1 - t0 (gen_ai.server.time_to_first_token); TPOT = (tn - t1) / (n - 1), the "
    "time per output token after the first (gen_ai.server.time_per_output_token); throughput = batch x n / (tn - t0) "
    "output tokens per second.",
    reference=_metrics_reference,
    cases=_metrics_cases,
    mistake=_metrics_all_tokens,
)

# ----------------------------------------------------------------------------- exercises

_FIT_MODELS = ["llama-3-8b", "llama-2-7b", "qwen2.5-7b", "gemma-2b", "mixtral-8x7b"]
_CHIPS = ["H100-SXM", "H200-SXM", "B200", "MI300X"]


def _fit_params(seed: int) -> dict:
    if seed == 0:
        return {"model": "llama-3-8b", "chip": "H100-SXM", "tokens": 8192}
    rng = random.Random(seed)
    return {"model": rng.choice(_FIT_MODELS), "chip": rng.choice(_CHIPS), "tokens": rng.choice([2048, 8192, 32768])}


def _fit_no_weights(model, chip, tokens):
    per = memory.kv_cache_bytes_per_token(model_spec(model)) * tokens
    return math.floor(0.9 * hardware.accelerator(chip).hbm_gb * 1e9 / per)


exercise(
    "inference.requests_that_fit",
    text=lambda model, chip, tokens: (
        f"One {chip} serves {model} in BF16 (weights and KV cache). With 90% of its HBM usable, how many requests "
        f"of {tokens:,} tokens each can hold their whole KV cache at once, after the weights? (A whole number.)"),
    params=_fit_params,
    solve=lambda model, chip, tokens: max_concurrent_requests(model, chip, tokens),
    mistake=_fit_no_weights,
    rtol=0.0,
    hint="(0.9 x HBM bytes - 2 x parameters) / (tokens x KV bytes per token), rounded down.",
)


def _ridge_params(seed: int) -> dict:
    if seed == 0:
        return {"chip": "H100-SXM"}
    return {"chip": random.Random(seed).choice(["A100-SXM-80GB", "H100-SXM", "H200-SXM", "B200", "MI300X",
                                                "Ascend-910B", "Ascend-910C", "MI355X"])}


exercise(
    "inference.decode_batch_at_ridge",
    text=lambda chip: (
        f"A dense model decodes in BF16 on a {chip} (its dense BF16 peak and HBM bandwidth from the hardware table). "
        "Count only the weights as bytes (each read once per step, 2 bytes) and 2 FLOPs per weight per sequence. "
        "At what batch size does the decode step's arithmetic intensity reach the chip's ridge point?"),
    params=_ridge_params,
    solve=lambda chip: hardware.accelerator(chip).ridge_point("bf16"),
    mistake=lambda chip: hardware.accelerator(chip).ridge_point("bf16") * 2,   # one FLOP per weight
    rtol=0.03,
    hint="Intensity = 2 x params x B / (2 x params) = B FLOP/byte; set it equal to peak / bandwidth.",
)


def _ratio_params(seed: int) -> dict:
    if seed == 0:
        return {"model": "deepseek-v3"}
    return {"model": random.Random(seed).choice(["deepseek-v3", "llama-3-70b", "gemma-2b", "qwen2.5-7b",
                                                 "llama-3-405b", "mixtral-8x7b"])}


def _mha_equivalent(model: str) -> float:
    s = model_spec(model)
    per_head = (s.head_dim + s.qk_rope_head_dim) + (s.v_head_dim or s.head_dim) if s.is_mla else 2 * s.head_dim
    return s.n_layers * s.n_heads * per_head * 2 / memory.kv_cache_bytes_per_token(s)


exercise(
    "inference.kv_saving_vs_mha",
    text=lambda model: (
        f"How many times more KV cache per token would {model} need if every one of its query heads had its own "
        "key and value (plain MHA with the same head widths; for MLA, keys of head_dim + rope_dim and values of "
        "v_head_dim per head) than it caches with its real attention?"),
    params=_ratio_params,
    solve=_mha_equivalent,
    mistake=lambda model: 1 / _mha_equivalent(model),
    rtol=0.01,
    hint="GQA: n_heads / n_kv_heads. MLA: n_heads x (key + value widths) / (kv_lora_rank + rope_dim).",
)


def _splits_params(seed: int) -> dict:
    if seed == 0:
        return {"batch": 1, "kv_heads": 8, "sms": 132}
    rng = random.Random(seed)
    return {"batch": rng.choice([1, 2, 4]), "kv_heads": rng.choice([2, 4, 8]), "sms": rng.choice([108, 132, 148])}


exercise(
    "inference.splits_to_fill_the_gpu",
    text=lambda batch, kv_heads, sms: (
        f"A decode attention step has batch {batch} and {kv_heads} KV heads; each (sequence, KV head, chunk) is one "
        f"thread block. What is the smallest number of KV chunks per (sequence, head) that gives at least one block "
        f"to each of the GPU's {sms} SMs?"),
    params=_splits_params,
    solve=lambda batch, kv_heads, sms: math.ceil(sms / (batch * kv_heads)),
    mistake=lambda batch, kv_heads, sms: math.ceil(sms / batch),               # forgets the heads
    rtol=0.0,
    hint="Blocks = batch x KV heads x chunks >= SMs.",
)
