"""Tests for llminfra_lab.longctx: RoPE extensions, long-context evaluation, sinks, block
selection, MLA scores, ring and Ulysses attention, and the selective scan.

References: Hugging Face `transformers`' RoPE initialisation functions
(`modeling_rope_utils.ROPE_INIT_FUNCTIONS`) for PI, dynamic NTK, YaRN and Llama 3.1; the
formulas of the papers (Chen et al. 2023, bloc97 2023, Peng et al. 2023, Dubey et al. 2024)
written plainly here; the model's own causal attention for ring, Ulysses and block
selection; a plain Python loop for the scan.
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llminfra_lab import longctx
from llminfra_lab.model import GPT, causal_attention, rope_frequencies, tiny_config


def _hf(rope_type: str, head_dim: int, theta: float, max_pos: int, seq_len=None, **params):
    pytest.importorskip("transformers")      # the reference (test extra); only these tests need it
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    cfg = LlamaConfig(hidden_size=head_dim * 4, num_attention_heads=4, head_dim=head_dim,
                      max_position_embeddings=max_pos, rope_parameters={"rope_type": rope_type, "rope_theta": theta,
                                                                        **params})
    inv, scale = ROPE_INIT_FUNCTIONS[rope_type](cfg, "cpu", seq_len) if seq_len else ROPE_INIT_FUNCTIONS[rope_type](cfg, "cpu")
    return inv, float(scale)


CONFIGS = [(128, 500000.0, 8192), (64, 10000.0, 4096), (32, 10000.0, 128), (128, 10000.0, 2048)]


# ----------------------------------------------------------------------------- RoPE extensions

def test_base_frequencies_are_the_models():
    """Built on model.rope_frequencies: angle at position 1 is theta^(-2i/d)."""
    for d, theta in ((32, 10000.0), (128, 500000.0)):
        want = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
        assert torch.allclose(longctx.base_inverse_frequencies(d, theta).double(), want, rtol=1e-6)
        cos, sin = longctx.rope_tables(longctx.base_inverse_frequencies(d, theta), 50)
        ref_cos, ref_sin = rope_frequencies(d, 50, theta)
        assert torch.allclose(cos, ref_cos, atol=2e-5) and torch.allclose(sin, ref_sin, atol=2e-5)


@pytest.mark.parametrize("d,theta,length", CONFIGS)
@pytest.mark.parametrize("factor", [2.0, 4.0, 8.0])
def test_pi_equals_transformers_linear(d, theta, length, factor):
    """Position interpolation (Chen 2023) = transformers' "linear" RoPE."""
    inv, _ = longctx.inverse_frequencies("pi", d, theta=theta, factor=factor, original_len=length)
    ref, _ = _hf("linear", d, theta, length, factor=factor)
    assert torch.allclose(inv, ref, rtol=1e-5, atol=0)


@pytest.mark.parametrize("d,theta,length", CONFIGS)
@pytest.mark.parametrize("factor", [2.0, 4.0, 16.0])
def test_yarn_equals_transformers(d, theta, length, factor):
    """YaRN (Peng 2023) = transformers' "yarn": frequencies and attention factor."""
    inv, scale = longctx.inverse_frequencies("yarn", d, theta=theta, factor=factor, original_len=length)
    ref, ref_scale = _hf("yarn", d, theta, length * int(factor), factor=factor, original_max_position_embeddings=length)
    assert torch.allclose(inv, ref, rtol=1e-5, atol=0)
    assert scale == pytest.approx(ref_scale, rel=1e-12)


@pytest.mark.parametrize("d,theta,length", CONFIGS)
def test_llama3_equals_transformers(d, theta, length):
    """Llama 3.1 scaling (Dubey 2024: factor 8, low 1, high 4) = transformers' "llama3"."""
    for factor, low, high in ((8.0, 1.0, 4.0), (32.0, 1.0, 4.0), (4.0, 2.0, 8.0)):
        inv, _ = longctx.inverse_frequencies("llama3", d, theta=theta, factor=factor, original_len=length,
                                             low_freq_factor=low, high_freq_factor=high)
        ref, _ = _hf("llama3", d, theta, length * 16, factor=factor, low_freq_factor=low, high_freq_factor=high,
                     original_max_position_embeddings=length)
        assert torch.allclose(inv, ref, rtol=1e-5, atol=0)


@pytest.mark.parametrize("d,theta,length", CONFIGS)
def test_dynamic_ntk_equals_transformers(d, theta, length):
    """Dynamic NTK = transformers' "dynamic" at the current length (and plain RoPE up to L)."""
    for factor, seq in ((2.0, length * 3), (4.0, length * 4), (8.0, length // 2)):
        inv, _ = longctx.inverse_frequencies("dynamic", d, theta=theta, factor=factor, original_len=length, seq_len=seq)
        ref, _ = _hf("dynamic", d, theta, length, seq_len=seq, factor=factor)
        assert torch.allclose(inv, ref, rtol=1e-5, atol=0)


def test_ntk_aware_formula():
    """NTK-aware (bloc97 2023): theta' = theta s^(d/(d-2)); the fastest pair keeps its frequency,
    the slowest is divided by exactly s."""
    d, theta, s = 64, 10000.0, 8.0
    inv, scale = longctx.inverse_frequencies("ntk", d, theta=theta, factor=s)
    base, _ = longctx.inverse_frequencies("none", d, theta=theta)
    want = (theta * s ** (d / (d - 2))) ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    assert torch.allclose(inv.double(), want, rtol=1e-5) and scale == 1.0
    assert inv[0] == pytest.approx(base[0].item(), rel=1e-6)
    assert (base[-1] / inv[-1]).item() == pytest.approx(s, rel=1e-5)


def test_yarn_paper_ramp_and_temperature():
    """YaRN (Peng 2023, section 3.4 and eq. for t): ramp with alpha=1, beta=32; attention
    temperature sqrt(1/t) = 0.1 ln(s) + 1. Pairs turning more than 32 times in L keep their
    frequency, pairs turning less than once are divided by s."""
    d, theta, length, s = 128, 10000.0, 4096, 16.0
    inv, scale = longctx.inverse_frequencies("yarn", d, theta=theta, factor=s, original_len=length)
    base, _ = longctx.inverse_frequencies("none", d, theta=theta)
    rotations = length * base / (2 * math.pi)
    fast, slow = rotations > 32, rotations < 1
    assert fast.any() and slow.any()
    assert torch.allclose(inv[fast], base[fast]) and torch.allclose(inv[slow], base[slow] / s)
    assert scale == pytest.approx(0.1 * math.log(s) + 1)
    assert longctx.yarn_attention_scale(1.0) == 1.0
    ramp = longctx.yarn_ramp(d, theta, length)
    assert ((ramp >= 0) & (ramp <= 1)).all() and bool((ramp[:-1] >= ramp[1:]).all())


def test_rope_validation():
    with pytest.raises(ValueError, match="method must be one of"):
        longctx.inverse_frequencies("alibi", 64)
    with pytest.raises(ValueError, match="even int"):
        longctx.inverse_frequencies("pi", 63)
    with pytest.raises(ValueError, match="factor"):
        longctx.inverse_frequencies("pi", 64, factor=0.5)
    with pytest.raises(ValueError, match="low_freq_factor"):
        longctx.inverse_frequencies("llama3", 64, factor=8.0, low_freq_factor=4.0, high_freq_factor=1.0)
    with pytest.raises(ValueError, match="1-D"):
        longctx.rope_tables(torch.ones(2, 2), 4)
    with pytest.raises(ValueError, match="must be a GPT"):
        longctx.extend_model("gpt", "pi", 256)


def test_extend_model_matches_plain_model_inside_training_length():
    """"none" and a factor of 1 leave the model unchanged; the extended copy runs past max_seq_len."""
    model = GPT(tiny_config("test"), seed=0).eval()
    idx = torch.randint(0, 64, (1, 40), generator=torch.Generator().manual_seed(0))
    for method in ("none", "pi", "yarn"):
        ext = longctx.extend_model(model, method, 64, original_len=64)
        assert torch.allclose(ext(idx), model(idx), atol=1e-5)
    long = longctx.extend_model(model, "yarn", 256, original_len=64)
    assert long.cfg.max_seq_len == 256 and long(torch.zeros(1, 200, dtype=torch.long)).shape == (1, 200, 64)


# ----------------------------------------------------------------------------- evaluation

def test_window_perplexity_and_needle_prompt():
    model = GPT(tiny_config("test"), seed=0).eval()
    ids = torch.randint(0, 64, (600,), generator=torch.Generator().manual_seed(1))
    ppl = longctx.window_perplexity(model, ids, 32, n_windows=2)
    assert 30 < ppl < 130                                     # untrained: about vocab size
    table = longctx.perplexity_vs_length(model, ids, [32, 64], methods=("none", "pi"), original_len=32)
    assert set(table) == {"none", "pi"} and table["none"][0] == pytest.approx(table["pi"][0])
    prompt, answer = longctx.needle_prompt(ids, 100, 0.5, key_len=6, answer_len=4)
    assert prompt.numel() == 100 and len(answer) == 4
    key = prompt[-6:].tolist()
    text = prompt.tolist()
    at = [i for i in range(len(text) - 16) if text[i:i + 6] == key]
    assert at and text[at[0] + 6:at[0] + 10] == answer
    with pytest.raises(ValueError, match="depth"):
        longctx.needle_prompt(ids, 100, 1.5)
    with pytest.raises(ValueError, match="too short"):
        longctx.needle_prompt(ids, 12, 0.5)
    with pytest.raises(ValueError, match="at least"):
        longctx.window_perplexity(model, ids[:10], 32)
    with pytest.raises(ValueError, match="unknown methods"):
        longctx.perplexity_vs_length(model, ids, [32], methods=("rope",))
    with pytest.raises(ValueError, match="lengths"):
        longctx.perplexity_vs_length(model, ids, [])
    assert longctx.needle_accuracy(model, ids, 64, [0.5], trials=1)[0] in (0.0, 1.0)


# ----------------------------------------------------------------------------- sinks, selection, MLA

def test_streaming_equals_full_attention_when_window_covers_everything():
    """With the window as long as the text, sinks or not, it is the plain causal model."""
    model = GPT(tiny_config("test"), seed=0).eval()
    idx = torch.randint(0, 64, (2, 48), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(idx)
        assert torch.allclose(longctx.streaming_logits(model, idx, 0, 48), ref, atol=1e-5)
        assert torch.allclose(longctx.streaming_logits(model, idx, 4, 44), ref, atol=1e-5)


def test_streaming_equals_evicting_kv_cache_decode():
    """A query past the cache sees sinks at their cache positions: brute force by re-running the
    model on [sinks + window] tokens at positions 0..S+W-1, as the cache would hold them."""
    model = GPT(tiny_config("test"), seed=0).eval()
    idx = torch.randint(0, 64, (1, 40), generator=torch.Generator().manual_seed(2))
    s, w = 2, 6
    with torch.no_grad():
        logits = longctx.streaming_logits(model, idx, s, w)
        t = 30
        # layer 1 only: a one-layer model makes the cache view exact (deeper layers see windows of windows)
        one = GPT(tiny_config("test", n_layer=1), seed=0).eval()
        got = longctx.streaming_logits(one, idx, s, w)[0, t]
        kept = torch.cat([idx[0, :s], idx[0, t - w + 1:t + 1]])[None]
        assert torch.allclose(got, one(kept)[0, -1], atol=1e-5)
    assert logits.shape == (1, 40, 64)
    with pytest.raises(ValueError, match="max_seq_len"):
        longctx.streaming_logits(model, idx, 10, 60)
    with pytest.raises(ValueError, match="torch.long"):
        longctx.streaming_logits(model, idx.float(), 1, 4)
    with pytest.raises(ValueError, match="1-D"):
        longctx.streaming_perplexity(model, idx, 1, 4)


@given(seed=st.integers(0, 10_000), blocks=st.integers(1, 6), block=st.sampled_from([2, 4, 8]))
@settings(max_examples=20, deadline=None)
def test_block_sparse_with_every_block_is_full_attention(seed, blocks, block):
    """NSA-style selection keeping every block = causal attention (property over shapes)."""
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, blocks * block, 8, generator=g) for _ in range(3))
    out, selected = longctx.block_sparse_attention(q, k, v, block, blocks)
    ref = causal_attention(q[None], k[None], v[None])[0]
    assert torch.allclose(out, ref, atol=1e-5)
    own = torch.arange(blocks * block) // block
    assert selected[..., torch.arange(blocks * block), own].all()


def test_block_sparse_selects_top_blocks_only():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(64, 8, generator=g) for _ in range(3))
    _, selected = longctx.block_sparse_attention(q, k, v, 8, 2)
    assert int(selected.sum(-1).max()) == 3                   # own block + 2 chosen
    with pytest.raises(ValueError, match="multiple of block"):
        longctx.block_sparse_attention(q[:60], k[:60], v[:60], 8, 2)
    with pytest.raises(ValueError, match="one shape"):
        longctx.block_sparse_attention(q, k[:8], v, 8, 2)


def test_mla_absorbed_scores_equal_materialised_keys():
    """DeepSeek-V2 section 2.1: W_uk absorbed into the query gives the same scores."""
    g = torch.Generator().manual_seed(0)
    q, latent, w_uk = torch.randn(5, 16, generator=g), torch.randn(30, 64, generator=g), torch.randn(64, 16, generator=g)
    assert torch.allclose(longctx.mla_scores(q, latent, w_uk), longctx.mla_scores(q, latent, w_uk, absorb=False),
                          rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="w_uk must be"):
        longctx.mla_scores(q, latent, w_uk.T)
    with pytest.raises(ValueError, match="2-D"):
        longctx.mla_scores(q[None], latent, w_uk)


# ----------------------------------------------------------------------------- ring and Ulysses

def _qkv(seed=0, b=1, h=4, t=32, d=8):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(b, h, t, d, generator=g) for _ in range(3))


@pytest.mark.distributed
@pytest.mark.parametrize("world,balance", [(2, True), (2, False),
                                           pytest.param(4, True, marks=pytest.mark.slow),
                                           pytest.param(4, False, marks=pytest.mark.slow)])
def test_ring_attention_equals_full_attention(world, balance):
    """Ring attention (Liu 2023) output equals full attention (float32, <= 1e-5), causal,
    with and without zigzag load balancing, across gloo processes."""
    q, k, v = _qkv(world)
    out = longctx.ring_attention(q, k, v, world, load_balance=balance)
    assert (out - causal_attention(q, k, v)).abs().max() <= 1e-5


@pytest.mark.distributed
@pytest.mark.parametrize("world", [2, pytest.param(4, marks=pytest.mark.slow)])
def test_ulysses_equals_full_attention(world):
    """DeepSpeed-Ulysses (Jacobs 2023): two all-to-alls around full attention equal it (<= 1e-5)."""
    q, k, v = _qkv(10 + world, b=2)
    assert (longctx.ulysses_attention(q, k, v, world) - causal_attention(q, k, v)).abs().max() <= 1e-5


def test_partial_attention_merges_to_full():
    """Two key blocks merged with attention.merge_partials = attention over both (no processes)."""
    from llminfra_lab.attention import merge_partials
    q, k, v = _qkv(3, t=16)
    pos = torch.arange(16)
    a = longctx.partial_attention(q, k[..., :8, :], v[..., :8, :], pos, pos[:8])
    b = longctx.partial_attention(q, k[..., 8:, :], v[..., 8:, :], pos, pos[8:])
    out, _ = merge_partials(*a, *b)
    assert (out - causal_attention(q, k, v)).abs().max() <= 1e-5


def test_zigzag_balances_causal_work():
    """Zigzag: every rank computes the same number of causal pairs; contiguous does not."""
    for world in (2, 4, 8):
        zig = longctx.causal_work(64, world, True).sum(1)
        con = longctx.causal_work(64, world, False).sum(1)
        assert (zig == zig[0]).all() and zig.sum() == con.sum() == 64 * 65 // 2
        assert con[-1] > con[0]
    assert longctx.shard_positions(8, 2, 0).tolist() == [0, 1, 6, 7]
    with pytest.raises(ValueError, match="divisible"):
        longctx.shard_positions(10, 4, 0)
    with pytest.raises(ValueError, match="rank must be"):
        longctx.shard_positions(16, 4, 4)
    with pytest.raises(ValueError, match="heads"):
        longctx.ulysses_attention(*_qkv(0, h=3), 2)
    with pytest.raises(ValueError, match="one shape"):
        longctx.ring_attention(torch.ones(2, 3), torch.ones(2, 3), torch.ones(2, 3), 2)


# ----------------------------------------------------------------------------- selective scan

@given(seed=st.integers(0, 10_000), t=st.integers(1, 70))
@settings(max_examples=25, deadline=None)
def test_parallel_scan_equals_recurrence(seed, t):
    """Mamba's selective scan (Gu & Dao 2023): the parallel prefix scan equals the recurrence,
    which equals a plain Python loop over scalars."""
    g = torch.Generator().manual_seed(seed)
    b, ch, n = 2, 3, 4
    x, delta = torch.randn(b, t, ch, generator=g), torch.rand(b, t, ch, generator=g)
    a, d = -torch.rand(ch, n, generator=g), torch.randn(ch, generator=g)
    bb, cc = torch.randn(b, t, n, generator=g), torch.randn(b, t, n, generator=g)
    seq = longctx.selective_scan_sequential(x, delta, a, bb, cc, d)
    par = longctx.selective_scan_parallel(x, delta, a, bb, cc, d)
    assert torch.allclose(seq, par, atol=1e-5)
    if seed % 5 == 0:                         # a scalar loop, written out
        h = [[0.0] * n for _ in range(ch)]
        for step in range(t):
            for c in range(ch):
                y = 0.0
                for j in range(n):
                    h[c][j] = math.exp(delta[0, step, c] * a[c, j]) * h[c][j] + delta[0, step, c] * bb[0, step, j] * x[0, step, c]
                    y += cc[0, step, j] * h[c][j]
                assert y + d[c] * x[0, step, c] == pytest.approx(seq[0, step, c].item(), abs=1e-4)


def test_scan_validation():
    assert [longctx.scan_steps(n) for n in (1, 2, 3, 64, 65)] == [0, 1, 2, 6, 7]
    with pytest.raises(ValueError, match="positive int"):
        longctx.scan_steps(0)
    x = torch.zeros(1, 4, 2)
    with pytest.raises(ValueError, match="expected A"):
        longctx.selective_scan_parallel(x, x, torch.zeros(3, 4), torch.zeros(1, 4, 4), torch.zeros(1, 4, 4), torch.zeros(2))
    with pytest.raises(ValueError, match="batch, T, channels"):
        longctx.selective_scan_sequential(x[0], x, torch.zeros(2, 4), torch.zeros(1, 4, 4), torch.zeros(1, 4, 4), torch.zeros(2))


# ----------------------------------------------------------------------------- plots and shipped results

def test_plots_draw(drawn):
    drawn(longctx.plot_rope_scaling(), min_artists=4, title="RoPE scaling")
    drawn(longctx.plot_ring_schedule()[1], min_artists=10, title="zigzag")
    drawn(longctx.plot_perplexity_vs_length(), min_artists=6)


def test_shipped_results_show_extension():
    """The shipped benchmark: every method equals the plain model at the training length."""
    res = longctx.load_results()
    first = [ppl[0] for ppl in res["zero_shot"].values()]
    assert max(first) == pytest.approx(min(first), rel=1e-6)
    assert set(res["zero_shot"]) == set(longctx.ROPE_METHODS)


@pytest.mark.distributed
def test_ring_and_ulysses_in_one_launch():
    """The lab's one-launch helper gives both results, each equal to full attention (<= 1e-5)."""
    q, k, v = _qkv(7, t=16)
    ring, ulysses = longctx.ring_and_ulysses(q, k, v, 2)
    ref = causal_attention(q, k, v)
    assert (ring - ref).abs().max() <= 1e-5 and (ulysses - ref).abs().max() <= 1e-5
    with pytest.raises(ValueError, match="heads"):
        longctx.ring_and_ulysses(*_qkv(0, h=3), 2)
