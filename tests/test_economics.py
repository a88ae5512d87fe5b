"""Training and serving economics: formulas against brute force and PyTorch's FLOP counter,
published results (DeepSeek-V3, Kaplan 2020 / Llama 3, PaLM), the attention share at long
context, the sourced price table, the five-layer stack, the lab's exercises, bad input."""
from __future__ import annotations

import math
import re
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from llminfra_lab import catalog, hardware, labkit
from llminfra_lab import economics as eco

ROOT = Path(__file__).resolve().parent.parent


# --- published results (the chapter's checks) -----------------------------------------

def test_deepseek_v3_cost_from_gpu_hours():
    """DeepSeek-V3 technical report (DeepSeek-AI 2024, table 1): 2.788M H800 GPU-hours at
    2 USD/GPU-hour = 5.576M USD."""
    pub = eco.PUBLISHED["deepseek-v3"]
    assert eco.training_cost_usd(2.788e6, 2.0) == pytest.approx(5.576e6, rel=1e-12)
    assert eco.training_cost_usd(pub["gpu_hours"], pub["usd_per_gpu_hour"]) == pytest.approx(pub["cost_usd"])


def test_six_nd_llama3_70b():
    """Training FLOPs C = 6ND (Kaplan et al. 2020); Llama-3-70B on 15T tokens
    (Llama 3 paper, Grattafiori et al. 2024) ~ 6.3e24 FLOPs."""
    assert eco.training_flops(70e9, 15e12) == pytest.approx(6.3e24, rel=1e-12)


def test_six_nd_llama3_70b_from_catalog():
    """6ND with N counted from the catalog's Llama-3-70B configuration (Grattafiori et al. 2024)
    is within 2% of 6.3e24 FLOPs: the published "70B" is rounded."""
    est = eco.estimate_training("llama-3-70b", 15e12, "H100-SXM", mfu=0.4)
    assert est.total_flops == pytest.approx(6.3e24, rel=0.02)


def test_palm_540b_mfu_from_reported_throughput():
    """PaLM (Chowdhery et al. 2022, table 3 and appendix B): 238.3K tokens/s on 6144 TPU v4
    chips (275 peak bf16 TFLOP/s each) with 6N + 12LHQT FLOPs per token is 46.2% MFU."""
    p = eco.PUBLISHED["palm-540b"]
    per_token = eco.palm_flops_per_token(p["n_params"], p["n_layers"], p["n_heads"], p["head_dim"], p["seq_len"])
    mfu = eco.model_flops_utilization(p["tokens_per_s"], per_token, p["n_chips"], p["peak_flops_per_s"])
    assert round(mfu, 3) == 0.462
    # Without the attention term (6N alone) the same throughput would read as 45.7%.
    mfu_6n = eco.model_flops_utilization(p["tokens_per_s"], 6 * p["n_params"], p["n_chips"], p["peak_flops_per_s"])
    assert round(mfu_6n, 3) == 0.457


def test_deepseek_v3_implied_utilization_is_plausible():
    """DeepSeek-V3 report: 14.8T tokens, 37B active parameters, 2.664M pre-training H800 GPU-hours.
    6ND over those hours is about 343 TFLOP/s per GPU: a third of the H800's dense BF16 peak
    (989 TFLOP/s, the same compute as H100 SXM) and a sixth of its dense FP8 peak."""
    pub = eco.PUBLISHED["deepseek-v3"]
    flops = eco.training_flops(pub["n_params_active"], pub["n_tokens"])
    per_gpu = flops / (pub["pretrain_gpu_hours"] * 3600)
    assert per_gpu == pytest.approx(3.43e14, rel=0.01)
    h800 = hardware.accelerator("H800-SXM")
    assert 0.30 < per_gpu / h800.peak_flops("bf16") < 0.40
    assert 0.15 < per_gpu / h800.peak_flops("fp8") < 0.20


# --- the FLOP formula against PyTorch's own FLOP counter ---------------------------------

class _TinyBlock(nn.Module):
    """A pre-norm Transformer block with explicit matmul attention (no biases)."""

    def __init__(self, d: int, heads: int, d_ff: int):
        super().__init__()
        self.heads, self.hd = heads, d // heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)
        self.up = nn.Linear(d, d_ff, bias=False)
        self.down = nn.Linear(d_ff, d, bias=False)
        self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.n1(x)).view(b, t, 3, self.heads, self.hd).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.hd), dim=-1)
        x = x + self.out((att @ v).transpose(1, 2).reshape(b, t, d))
        return x + self.down(torch.relu(self.up(self.n2(x))))


def test_palm_formula_matches_pytorch_flop_counter():
    """6N + 12LHQT per token (Chowdhery et al. 2022, appendix B) equals what
    torch.utils.flop_counter counts for a forward and backward pass of a small Transformer,
    where N counts every matrix-multiplied weight (embedding lookups are not FLOPs)."""
    torch.manual_seed(0)
    vocab, d, heads, d_ff, layers, t = 64, 32, 4, 64, 3, 16
    emb = nn.Embedding(vocab, d)
    blocks = nn.Sequential(*[_TinyBlock(d, heads, d_ff) for _ in range(layers)])
    head = nn.Linear(d, vocab, bias=False)
    idx = torch.randint(0, vocab, (1, t))
    counter = FlopCounterMode(display=False)
    with counter:
        loss = nn.functional.cross_entropy(head(blocks(emb(idx))).view(t, vocab), idx.view(t))
        loss.backward()
    n_matmul = sum(p.numel() for m in list(blocks.modules()) + [head] if isinstance(m, nn.Linear)
                   for p in m.parameters())
    expected = eco.palm_flops_per_token(n_matmul, layers, heads, d // heads, t) * t
    assert counter.get_total_flops() == expected


# --- the attention term at long context (issue 8, erratum 5) ------------------------------

@pytest.mark.parametrize("name", ["llama-2-7b", "llama-3-8b", "llama-3-70b", "llama-3-405b", "qwen2.5-72b"])
@pytest.mark.parametrize("seq_len", [2048, 8192, 131072])
def test_attention_term_of_a_catalog_model_is_palms(name, seq_len):
    """For multi-head and grouped-query attention, attention_flops_per_token is PaLM's
    12 L H Q T (Chowdhery et al. 2022, app. B): GQA shares K and V, not the score FLOPs."""
    spec = catalog.model_spec(name)
    attention = eco.attention_flops_per_token(spec, seq_len)
    assert attention == 12 * spec.n_layers * spec.n_heads * spec.head_dim * seq_len
    total = eco.model_flops_per_token(spec, seq_len)
    assert total == pytest.approx(eco.palm_flops_per_token(spec.active_params(), spec.n_layers, spec.n_heads,
                                                           spec.head_dim, seq_len), rel=1e-12)
    assert eco.attention_share(spec, seq_len) == pytest.approx(attention / total, rel=1e-12)


def test_attention_term_of_mla_counts_query_key_and_value_widths():
    """DeepSeek-V3's multi-head latent attention (catalog: 128 heads, 128 no-RoPE + 64 RoPE
    query/key dims, 128 value dims): Q K^T costs 2 T H (128 + 64) and the sum over V 2 T H 128
    per layer and token forward, three times that with the backward pass."""
    v3 = catalog.model_spec("deepseek-v3")
    t = 4096
    by_hand = 3 * v3.n_layers * (2 * t * 128 * (128 + 64) + 2 * t * 128 * 128)
    assert eco.attention_flops_per_token(v3, t) == by_hand
    assert eco.model_flops_per_token(v3, t) == pytest.approx(6 * v3.active_params() + by_hand)


def test_attention_is_not_a_few_percent_at_8k_for_smaller_models():
    """Issue 8, erratum 5: at Llama 3's 8K pre-training context (model card) the attention
    scores are about 21% of Llama-3-8B's training FLOPs per token, 13% of Llama-3-70B's and
    8% of Llama-3-405B's; at 128K they are the majority for all three. PaLM 540B at 2048
    tokens, where the chapter's old "a few percent" came from, is about 1%."""
    share = {m: {t: eco.attention_share(catalog.model_spec(m), t) for t in (8192, 131072)}
             for m in ("llama-3-8b", "llama-3-70b", "llama-3-405b")}
    assert share["llama-3-8b"][8192] == pytest.approx(0.211, abs=0.002)
    assert share["llama-3-70b"][8192] == pytest.approx(0.132, abs=0.002)
    assert share["llama-3-405b"][8192] == pytest.approx(0.077, abs=0.002)
    assert all(share[m][131072] > 0.5 for m in share)
    p = eco.PUBLISHED["palm-540b"]
    palm = eco.palm_flops_per_token(p["n_params"], p["n_layers"], p["n_heads"], p["head_dim"], p["seq_len"])
    assert 1 - 6 * p["n_params"] / palm == pytest.approx(0.011, abs=0.001)


def test_attention_raises_llama3_70b_implied_mfu_from_28_to_32_percent():
    """Llama 3 model card: 6.4M H100-80GB GPU-hours for the 70B on 15T tokens at 8K context.
    With 6ND alone that is 27.6% MFU at the dense BF16 peak; with 6N + 12LHQT, 31.9%."""
    p = eco.PUBLISHED["llama-3-70b"]
    spec = catalog.model_spec("llama-3-70b")
    peak = hardware.accelerator(p["accelerator"]).peak_flops("bf16")
    capacity = p["gpu_hours"] * 3600 * peak
    mfu_6nd = eco.training_flops(p["n_params"], p["n_tokens"]) / capacity
    per_token = eco.palm_flops_per_token(p["n_params"], spec.n_layers, spec.n_heads, spec.head_dim, p["seq_len"])
    mfu_attn = per_token * p["n_tokens"] / capacity
    assert mfu_6nd == pytest.approx(0.276, abs=0.001) and mfu_attn == pytest.approx(0.319, abs=0.001)
    assert labkit.solution("economics.implied_mfu") == pytest.approx(mfu_6nd, rel=1e-12)
    assert labkit.solution("economics.implied_mfu_with_attention") == pytest.approx(mfu_attn, rel=1e-12)


def test_attention_functions_reject_bad_input():
    with pytest.raises(ValueError, match="ModelSpec"):
        eco.attention_flops_per_token("llama-3-8b", 8192)
    with pytest.raises(ValueError, match="ModelSpec"):
        eco.model_flops_per_token("llama-3-8b", 8192)
    with pytest.raises(ValueError, match="seq_len"):
        eco.attention_share(catalog.model_spec("llama-3-8b"), 0)


# --- the lab's exercises: seed 0 gives the chapter's numbers --------------------------------

def test_exercise_solutions_match_the_chapter():
    """The chapter's folded solutions quote these numbers; the checkers must agree with them."""
    assert labkit.solution("economics.output_token_cost") == pytest.approx(23, rel=0.02)      # USD / M output
    assert labkit.solution("economics.cost_crossover_batch") == pytest.approx(150, rel=0.02)
    assert labkit.solution("economics.budget_max_params") == pytest.approx(60e9, rel=0.01)
    assert labkit.solution("economics.budget_chinchilla_params") == pytest.approx(212e9, rel=0.01)
    assert labkit.solution("economics.moe_crossover_batch") == pytest.approx(5278, rel=0.001)
    assert labkit.solution("economics.price_fall_per_year") == pytest.approx(0.07, abs=0.005)


def test_output_token_cost_exercise_matches_estimate_serving():
    """The exercise's arithmetic and estimate_serving agree: Llama-3-70B on two H100s at batch 1,
    rescaled from the catalog's 70.55B parameters to the exercise's round 70B (memory-bound
    decode cost is proportional to the weight bytes)."""
    spec = catalog.model_spec("llama-3-70b")
    est = eco.estimate_serving(spec, "H100-SXM", n_gpus=2, batch_size=1)
    per_param = est.usd_per_million_output * 70e9 / spec.total_params()   # decode cost scales with weight bytes
    assert per_param == pytest.approx(labkit.solution("economics.output_token_cost"), rel=1e-9)


def test_estimate_serving_takes_weight_bytes_from_precision():
    """bytes_per_param defaults to precision.bytes_per_element: FP8 weights are half of BF16's."""
    bf16 = eco.estimate_serving("llama-3-8b", precision="bf16")
    fp8 = eco.estimate_serving("llama-3-8b", precision="fp8")
    assert fp8.weight_bytes == pytest.approx(bf16.weight_bytes / 2)
    assert eco.estimate_serving("llama-3-8b", bytes_per_param=0.5).weight_bytes == pytest.approx(bf16.weight_bytes / 4)


# --- utilization, hours, serving -------------------------------------------------------

@given(flops=st.floats(1e18, 1e27), peak=st.floats(1e13, 1e16), mfu=st.floats(0.01, 1.0))
@settings(max_examples=60, deadline=None)
def test_gpu_hours_and_mfu_are_inverse(flops, peak, mfu):
    """Running for gpu_hours(C, peak, MFU) at C FLOPs means MFU = C / (hours x 3600 x peak)."""
    hours = eco.gpu_hours(flops, peak, mfu)
    assert flops / (hours * 3600 * peak) == pytest.approx(mfu, rel=1e-9)


def test_mfu_is_throughput_over_peak_brute_force():
    """MFU by hand: 100K tokens/s x 6e10 FLOPs/token (a 10B model) on 8 chips of 1e15 FLOP/s
    is 6e15 / 8e15 = 0.75."""
    assert eco.model_flops_utilization(100_000, 6e10, 8, 1e15) == pytest.approx(0.75)


def test_cost_per_million_tokens_brute_force():
    """A 2 USD/hour GPU producing 1000 tokens/s makes 3.6M tokens an hour: 0.556 USD per million."""
    assert eco.cost_per_million_tokens(1000, 2.0) == pytest.approx(2.0 / 3.6)


def test_decode_throughput_regimes():
    """Batch 1 is memory-bound: tokens/s = bandwidth / weight bytes. A huge batch is
    compute-bound: tokens/s = peak / 2N."""
    n, wb, peak, bw = 7e9, 14e9, 989e12, 3.35e12
    assert eco.decode_tokens_per_second(n, wb, 1, peak, bw) == pytest.approx(bw / wb)
    assert eco.decode_tokens_per_second(n, wb, 100_000, peak, bw) == pytest.approx(peak / (2 * n))


@given(batch=st.integers(1, 4096))
@settings(max_examples=60, deadline=None)
def test_decode_throughput_grows_with_batch_and_respects_both_roofs(batch):
    n, wb, peak, bw = 8e9, 16e9, 989e12, 3.35e12
    tps = eco.decode_tokens_per_second(n, wb, batch, peak, bw)
    assert tps <= batch * bw / wb * (1 + 1e-12)
    assert tps <= peak / (2 * n) * (1 + 1e-12)
    assert eco.decode_tokens_per_second(n, wb, batch + 1, peak, bw) >= tps * (1 - 1e-12)


def test_prefill_throughput_brute_force():
    assert eco.prefill_tokens_per_second(7e9, 1e15, 0.5) == pytest.approx(1e15 * 0.5 / 14e9)


def test_estimate_serving_llama_and_memory_check():
    """Llama-3-8B in BF16 on one H100: batch 1 decode is memory-bound and costs far more per
    output token than prefill does per input token; DeepSeek-V3 does not fit on one GPU."""
    s1 = eco.estimate_serving("llama-3-8b", "H100-SXM", batch_size=1)
    h100 = hardware.accelerator("H100-SXM")
    assert s1.decode_bound == "memory"
    assert s1.decode_tokens_per_s == pytest.approx(h100.hbm_tbps * 1e12 / s1.weight_bytes)
    assert s1.usd_per_million_output > 10 * s1.usd_per_million_input
    s256 = eco.estimate_serving("llama-3-8b", "H100-SXM", batch_size=256)
    assert s256.usd_per_million_output < s1.usd_per_million_output / 50
    with pytest.raises(ValueError, match="n_gpus >="):
        eco.estimate_serving("deepseek-v3", "H800-SXM", n_gpus=1)


def test_estimate_training_deepseek_v3_matches_report_scale():
    """Catalog DeepSeek-V3 (37B active) on 14.8T tokens: 6ND ~ 3.3e24 FLOPs (DeepSeek-AI 2024)."""
    est = eco.estimate_training("deepseek-v3", 14.8e12, "H800-SXM", precision="bf16", mfu=0.33)
    assert est.total_flops == pytest.approx(6 * 37e9 * 14.8e12, rel=0.03)
    assert est.gpu_hours == pytest.approx(2.788e6, rel=0.1)
    assert est.days_on(2048) == pytest.approx(est.gpu_hours / 2048 / 24)


# --- the price table ---------------------------------------------------------------------

def test_price_history_rows_are_sourced_and_sane():
    bib = (ROOT / "references.bib").read_text(encoding="utf-8")
    keys = set(re.findall(r"^@\w+\{([^,\s]+),", bib, re.M))
    for p in eco.PRICE_HISTORY:
        assert p.source in keys, f"{p.model}: {p.source} not in references.bib"
        assert p.tier in eco.TIERS
        assert 0 < p.usd_per_m_input <= p.usd_per_m_output
        assert date(2022, 1, 1) <= p.date <= date(2026, 12, 31)


def test_price_history_published_rows():
    """OpenAI (2023-03-01): gpt-3.5-turbo at USD 0.002 per 1K tokens, ten times cheaper than
    the GPT-3.5 models before it; DeepSeek API docs: deepseek-chat 0.27 / 1.10 USD per M."""
    rows = {p.model: p for p in eco.PRICE_HISTORY}
    turbo = rows["gpt-3.5-turbo"]
    assert (turbo.usd_per_m_input, turbo.usd_per_m_output) == (2.0, 2.0)
    assert rows["text-davinci-003"].usd_per_m_input == 10 * turbo.usd_per_m_input
    v3 = rows["deepseek-chat (DeepSeek-V3)"]
    assert (v3.usd_per_m_input, v3.usd_per_m_output) == (0.27, 1.10)


# Prices exactly as each source prints them, in its own unit, transcribed independently of
# PRICE_HISTORY: (model, date, input, output, unit in tokens). OpenAI's 2023 posts price per
# 1K tokens; the later posts, OpenAI's pricing page and DeepSeek's docs price per 1M.
PUBLISHED_PRICES = [
    # OpenAI, "Introducing ChatGPT and Whisper APIs" (2023-03-01): gpt-3.5-turbo at $0.002 / 1K,
    # "10x cheaper than our existing GPT-3.5 models" (text-davinci-003, released 2022-11-28).
    ("text-davinci-003", date(2022, 11, 28), 0.02, 0.02, 1e3),
    ("gpt-3.5-turbo", date(2023, 3, 1), 0.002, 0.002, 1e3),
    # OpenAI, "GPT-4" (2023-03-14): $0.03 / 1K prompt, $0.06 / 1K completion, 8K context.
    ("gpt-4 (8K)", date(2023, 3, 14), 0.03, 0.06, 1e3),
    # OpenAI DevDay (2023-11-06): GPT-4 Turbo $0.01 / $0.03 per 1K; new GPT-3.5 Turbo $0.001 / $0.002.
    ("gpt-3.5-turbo-1106", date(2023, 11, 6), 0.001, 0.002, 1e3),
    ("gpt-4-turbo (1106-preview)", date(2023, 11, 6), 0.01, 0.03, 1e3),
    # OpenAI, "New embedding models and API updates" (2024-01-25): $0.0005 / $0.0015 per 1K.
    ("gpt-3.5-turbo-0125", date(2024, 1, 25), 0.0005, 0.0015, 1e3),
    # OpenAI, "Hello GPT-4o" (2024-05-13): half the price of GPT-4 Turbo, $5 / $15 per 1M.
    ("gpt-4o", date(2024, 5, 13), 5.0, 15.0, 1e6),
    # OpenAI, "GPT-4o mini" (2024-07-18): 15 cents / 60 cents per 1M.
    ("gpt-4o-mini", date(2024, 7, 18), 0.15, 0.60, 1e6),
    # OpenAI, "Introducing Structured Outputs in the API" (2024-08-06): $2.50 / $10.00 per 1M.
    ("gpt-4o-2024-08-06", date(2024, 8, 6), 2.50, 10.00, 1e6),
    # OpenAI, "o1 and new tools for developers" (2024-12-17) and the API pricing page: $15 / $60 per 1M.
    ("o1", date(2024, 12, 17), 15.0, 60.0, 1e6),
    # DeepSeek API docs, Models & Pricing (January 2025), cache-miss input: V3 $0.27 / $1.10, R1 $0.55 / $2.19.
    ("deepseek-chat (DeepSeek-V3)", date(2024, 12, 26), 0.27, 1.10, 1e6),
    ("deepseek-reasoner (DeepSeek-R1)", date(2025, 1, 20), 0.55, 2.19, 1e6),
]


def test_price_history_matches_published_prices():
    """Every PRICE_HISTORY row equals the price its source prints, converted to USD per
    million tokens, at the source's date; and no row is missing from the transcription."""
    rows = {p.model: p for p in eco.PRICE_HISTORY}
    assert set(rows) == {m for m, *_ in PUBLISHED_PRICES}
    for model, when, usd_in, usd_out, per_tokens in PUBLISHED_PRICES:
        row = rows[model]
        assert row.date == when, model
        assert row.usd_per_m_input == pytest.approx(usd_in * 1e6 / per_tokens, rel=1e-12), model
        assert row.usd_per_m_output == pytest.approx(usd_out * 1e6 / per_tokens, rel=1e-12), model


def test_price_history_filters_and_sorts():
    rows = eco.price_history("gpt-4-class")
    assert rows and all(p.tier == "gpt-4-class" for p in rows)
    assert [p.date for p in rows] == sorted(p.date for p in rows)
    assert all(p.provider == "DeepSeek" for p in eco.price_history(provider="DeepSeek"))
    assert len(eco.price_history()) == len(eco.PRICE_HISTORY)


def test_blended_price_brute_force():
    p = eco.PricePoint("m", "X", "gpt-4-class", date(2024, 1, 1), 4.0, 8.0, "k")
    assert eco.blended_price(p) == pytest.approx(0.75 * 4 + 0.25 * 8)
    assert eco.blended_price(p, 1.0) == 4.0 and eco.blended_price(p, 0.0) == 8.0


def test_fit_price_trend_matches_numpy_polyfit():
    """The trend is an ordinary least-squares line in log10(price); numpy.polyfit is the reference."""
    pts = eco.price_history("gpt-4-class")
    factor, half_life = eco.fit_price_trend(pts)
    slope, _ = np.polyfit([p.year for p in pts], [math.log10(eco.blended_price(p)) for p in pts], 1)
    assert factor == pytest.approx(10 ** slope, rel=1e-9)
    assert half_life == pytest.approx(math.log10(0.5) / slope, rel=1e-9)
    assert factor < 0.5  # GPT-4-class tokens got more than twice as cheap every year


def test_price_point_year_is_fractional():
    assert eco.PricePoint("m", "X", "reasoning", date(2024, 1, 1), 1, 1, "k").year == 2024.0
    assert eco.PricePoint("m", "X", "reasoning", date(2023, 7, 2), 1, 1, "k").year == pytest.approx(2023.5, abs=0.003)


# --- figures -------------------------------------------------------------------------------

def test_plots_draw(drawn):
    ax = eco.plot_price_history()
    assert ax.get_yscale() == "log" and len(ax.collections) == len(eco.TIERS)
    drawn(ax, min_artists=len(eco.PRICE_HISTORY), title="API list price")
    ax2 = eco.plot_cost_vs_mfu(6.3e24, 989e12, 2.0, mfu_marker=0.4)
    assert len(ax2.lines) == 1
    drawn(ax2, min_artists=3)


def test_plot_training_costs_draws(drawn):
    ests = [eco.estimate_training(m, 15e12) for m in ("llama-3-8b", "llama-3-70b")]
    ax = eco.plot_training_costs(ests)
    assert len(ax.patches) == 2
    drawn(ax, min_artists=4, title="6ND on H100-SXM")
    ax = eco.plot_serving_cost("llama-3-8b", batch_sizes=(1, 8, 512))
    ys = ax.lines[0].get_ydata()
    assert len(ys) == 3 and ys[0] > ys[1] > ys[2]
    with pytest.raises(ValueError, match="batch_sizes"):
        eco.plot_serving_cost("llama-3-8b", batch_sizes=(0, 4))
    with pytest.raises(ValueError, match="batch_sizes"):
        eco.plot_serving_cost("llama-3-8b", batch_sizes=())


def test_stack_schematic_draws_every_layer_and_its_systems(drawn):
    """The schematic draws one box per layer of STACK, with the layer's name and every
    example system, and the chapter's table lists the same layers in the same order."""
    ax = eco.plot_stack_schematic()
    drawn(ax, min_artists=2 * len(eco.STACK), title="five layers")
    assert len(ax.patches) >= len(eco.STACK)
    texts = "\n".join(t.get_text() for t in ax.texts).replace("\n", " ")
    for layer in eco.STACK:
        assert layer.name in texts
        for system in layer.global_examples + layer.chinese_examples:
            assert system in texts, system
    table = eco.stack_table_markdown().splitlines()
    assert [row.split("|")[1].strip() for row in table[2:]] == [layer.name for layer in eco.STACK]
    assert eco.STACK[0].name == "Applications" and eco.STACK[-1].name == "Hardware"


def test_plot_attention_share_draws_one_line_per_model(drawn):
    ax = eco.plot_attention_share(("llama-3-8b", "llama-3-405b"), (2048, 8192, 131072))
    drawn(ax, min_artists=2)
    assert len(ax.lines) == 2
    first = ax.lines[0].get_ydata()
    assert list(first) == sorted(first) and 0 < first[0] < first[-1] < 100
    with pytest.raises(ValueError, match="seq_lens"):
        eco.plot_attention_share(seq_lens=())
    with pytest.raises(ValueError, match="seq_lens"):
        eco.plot_attention_share(seq_lens=(0, 8192))
    with pytest.raises(ValueError, match="models"):
        eco.plot_attention_share(models=())
    with pytest.raises(KeyError, match="valid names"):
        eco.plot_attention_share(models=("no-such-model",))


# --- bad input -----------------------------------------------------------------------------

@pytest.mark.parametrize("call, match", [
    (lambda: eco.training_flops(0, 1e12), "n_params"),
    (lambda: eco.training_flops(1e9, -1), "n_tokens"),
    (lambda: eco.training_flops(float("nan"), 1), "n_params"),
    (lambda: eco.palm_flops_per_token(1e9, 0, 8, 64, 2048), "n_layers"),
    (lambda: eco.palm_flops_per_token(1e9, 2, 8, 64, 2048.5), "seq_len"),
    (lambda: eco.model_flops_utilization(1e3, 1e9, 0, 1e15), "n_chips"),
    (lambda: eco.model_flops_utilization(-1, 1e9, 1, 1e15), "tokens_per_s"),
    (lambda: eco.gpu_hours(1e24, 1e15, 0.0), "mfu"),
    (lambda: eco.gpu_hours(1e24, 1e15, 1.5), "mfu"),
    (lambda: eco.training_cost_usd(1e6, 0), "usd_per_gpu_hour"),
    (lambda: eco.training_cost_usd(-5, 2), "gpu_hours"),
    (lambda: eco.decode_tokens_per_second(7e9, 14e9, 0, 1e15, 3e12), "batch_size"),
    (lambda: eco.decode_tokens_per_second(7e9, 0, 1, 1e15, 3e12), "weight_bytes"),
    (lambda: eco.prefill_tokens_per_second(7e9, 1e15, 0), "mfu"),
    (lambda: eco.cost_per_million_tokens(0, 2), "tokens_per_s"),
    (lambda: eco.cost_per_million_tokens(100, True), "usd_per_hour"),
    (lambda: eco.blended_price("gpt-4o"), "PricePoint"),
    (lambda: eco.blended_price(eco.PRICE_HISTORY[0], 1.5), "input_share"),
    (lambda: eco.fit_price_trend(eco.PRICE_HISTORY[:1]), "at least 2"),
    (lambda: eco.fit_price_trend([eco.PRICE_HISTORY[3], eco.PRICE_HISTORY[4]]), "more than one date"),
    (lambda: eco.plot_price_history(input_share=-0.1), "input_share"),
    (lambda: eco.plot_training_costs([]), "TrainingEstimate"),
    (lambda: eco.plot_cost_vs_mfu(1e24, 1e15, 2.0, mfu_marker=2.0), "mfu_marker"),
    (lambda: eco.plot_cost_vs_mfu(0, 1e15, 2.0), "total_flops"),
    (lambda: eco.palm_flops_per_token(-1, 2, 8, 64, 2048), "n_params"),
    (lambda: eco.palm_flops_per_token(1e9, 2, 8, 0, 2048), "head_dim"),
    (lambda: eco.model_flops_utilization(1e3, 0, 1, 1e15), "flops_per_token"),
    (lambda: eco.model_flops_utilization(1e3, 1e9, 1, float("inf")), "peak_flops_per_s"),
    (lambda: eco.gpu_hours(1e24, 0, 0.4), "peak_flops_per_s"),
    (lambda: eco.decode_tokens_per_second(0, 14e9, 1, 1e15, 3e12), "active_params"),
    (lambda: eco.decode_tokens_per_second(7e9, 14e9, 1, 0, 3e12), "peak_flops_per_s"),
    (lambda: eco.decode_tokens_per_second(7e9, 14e9, 1, 1e15, -3e12), "hbm_bytes_per_s"),
    (lambda: eco.prefill_tokens_per_second(0, 1e15, 0.5), "active_params"),
    (lambda: eco.prefill_tokens_per_second(7e9, 0, 0.5), "peak_flops_per_s"),
    (lambda: eco.plot_cost_vs_mfu(1e24, 0, 2.0), "peak_flops_per_s"),
    (lambda: eco.plot_cost_vs_mfu(1e24, 1e15, 0), "usd_per_gpu_hour"),
])
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_numpy_scalars_are_accepted_and_bools_rejected():
    """Sizes computed with NumPy (np.int64 token counts, np.float64 prices) are valid input;
    True is an int in Python but never a size."""
    assert eco.training_flops(np.int64(70_000_000_000), np.float64(15e12)) == pytest.approx(6.3e24)
    assert eco.model_flops_utilization(100_000, 6e10, np.int64(8), 1e15) == pytest.approx(0.75)
    assert eco.gpu_hours(1e24, 1e15, np.float64(0.5)) == pytest.approx(1e24 / 5e14 / 3600)
    with pytest.raises(ValueError, match="n_chips"):
        eco.model_flops_utilization(1000, 6e9, True, 1e15)
    with pytest.raises(ValueError, match="mfu"):
        eco.gpu_hours(1e24, 1e15, True)


def test_moe_all_experts_read_assumption_holds_at_batch_150():
    """estimate_serving charges an MoE decode step for all the weights. With DeepSeek-V3's
    routing (catalog: 8 of 256 routed experts per token), a batch of 150 tokens leaves each
    expert unused with probability (1 - 8/256)^150 < 1%, as the docstring says."""
    v3 = catalog.model_spec("deepseek-v3")
    p_unused = (1 - v3.experts_per_token / v3.n_experts) ** 150
    assert p_unused < 0.01
    # Monte Carlo with the same routing (8 distinct experts per token) agrees.
    rng = np.random.default_rng(0)
    touched = [len({int(e) for _ in range(150) for e in rng.choice(v3.n_experts, v3.experts_per_token, replace=False)})
               / v3.n_experts for _ in range(20)]
    assert np.mean(touched) == pytest.approx(1 - p_unused, abs=0.01)


def test_unknown_tier_or_provider_lists_valid_names():
    with pytest.raises(KeyError, match="gpt-4-class"):
        eco.price_history("gpt-5-class")
    with pytest.raises(KeyError, match="DeepSeek"):
        eco.price_history(provider="Nobody")


def test_days_on_rejects_bad_gpu_count():
    est = eco.TrainingEstimate("m", 1e9, 1e12, 6e21, "X", "bf16", 1e15, 0.4, 100.0, 2.0, 200.0)
    with pytest.raises(ValueError, match="n_gpus"):
        est.days_on(0)


def test_estimators_reject_bad_names_and_sizes():
    with pytest.raises(KeyError, match="valid names"):
        eco.estimate_training("no-such-model", 1e12)
    with pytest.raises(KeyError, match="known names"):
        eco.estimate_training("llama-3-8b", 1e12, "no-such-gpu")
    with pytest.raises(ValueError, match="precision|fp"):
        eco.estimate_training("llama-3-8b", 1e12, precision="fp128")
    with pytest.raises(ValueError, match="model must be"):
        eco.estimate_training(42, 1e12)
    with pytest.raises(ValueError, match="n_tokens"):
        eco.estimate_training("llama-3-8b", 0)
    with pytest.raises(ValueError, match="n_gpus"):
        eco.estimate_serving("llama-3-8b", n_gpus=0)
    with pytest.raises(ValueError, match="model must be"):
        eco.estimate_serving(3.5)
    with pytest.raises(ValueError, match="bytes_per_param"):
        eco.estimate_serving("llama-3-8b", bytes_per_param=0)
    with pytest.raises(ValueError, match="mfu"):
        eco.estimate_serving("llama-3-8b", prefill_mfu=0)
    with pytest.raises(ValueError, match="batch_size"):
        eco.estimate_serving("llama-3-8b", batch_size=0)
    with pytest.raises(ValueError, match="usd_per_gpu_hour"):
        eco.estimate_serving("llama-3-8b", usd_per_gpu_hour=0)
    with pytest.raises(ValueError, match="mfu"):
        eco.estimate_training("llama-3-8b", 1e12, mfu=0)
    with pytest.raises(ValueError, match="usd_per_gpu_hour"):
        eco.estimate_training("llama-3-8b", 1e12, usd_per_gpu_hour=-1)
