"""Naive and tiled attention against PyTorch's scaled_dot_product_attention; IO counts by brute force."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from llminfra_lab.attention import (
    HBMTraffic,
    attention_io_table,
    blocks_for_sram,
    merge_partials,
    naive_attention,
    naive_attention_hbm_bytes,
    naive_attention_hbm_elements,
    online_softmax_step,
    plot_attention_io,
    tiled_attention,
    tiled_attention_hbm_bytes,
    tiled_attention_hbm_elements,
)

torch.set_num_threads(1)


def qkv(shape_q, n_k=None, dv=None, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    *lead, n_q, d = shape_q
    n_k = n_q if n_k is None else n_k
    q = torch.randn(*lead, n_q, d, generator=g, dtype=dtype)
    k = torch.randn(*lead, n_k, d, generator=g, dtype=dtype)
    v = torch.randn(*lead, n_k, dv or d, generator=g, dtype=dtype)
    return q, k, v


@pytest.mark.parametrize("causal", [False, True])
def test_naive_attention_equals_sdpa(causal):
    """Reference: torch.nn.functional.scaled_dot_product_attention (float32, <= 1e-5)."""
    q, k, v = qkv((2, 3, 33, 16))
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    assert (naive_attention(q, k, v, causal) - ref).abs().max() <= 1e-5


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 2), heads=st.integers(1, 3), n_q=st.integers(1, 70), n_k=st.integers(1, 70),
    d=st.sampled_from([1, 4, 8, 16, 32]), dv=st.sampled_from([None, 8]),
    block_q=st.integers(1, 40), block_k=st.integers(1, 40), causal=st.booleans(), seed=st.integers(0, 1000),
)
def test_tiled_attention_equals_sdpa_for_any_shape_and_blocks(batch, heads, n_q, n_k, d, dv, block_q, block_k, causal, seed):
    """Dao et al. 2022: tiling with the online softmax is exact. Reference: PyTorch SDPA
    (is_causal: query i sees keys 0..i), float32, max abs error <= 1e-5."""
    q, k, v = qkv((batch, heads, n_q, d), n_k=n_k, dv=dv, seed=seed)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    out = tiled_attention(q, k, v, causal=causal, block_q=block_q, block_k=block_k)
    assert out.shape == ref.shape
    assert (out - ref).abs().max() <= 1e-5


def test_tiled_attention_custom_scale_and_lse_equal_brute_force():
    """Brute force: lse_i = logsumexp_j(scale * q_i . k_j); output equals SDPA with the same scale."""
    q, k, v = qkv((2, 29, 8))
    out, lse = tiled_attention(q, k, v, block_q=7, block_k=5, scale=0.3, return_lse=True)
    assert (out - F.scaled_dot_product_attention(q, k, v, scale=0.3)).abs().max() <= 1e-5
    assert (lse - torch.logsumexp(0.3 * q @ k.transpose(-2, -1), dim=-1)).abs().max() <= 1e-5


def test_tiled_attention_keeps_half_precision_dtype():
    q, k, v = qkv((1, 2, 40, 16), dtype=torch.float16)
    out = tiled_attention(q, k, v, causal=True, block_q=16, block_k=16)
    ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True)
    assert out.dtype == torch.float16 and (out.float() - ref).abs().max() <= 2e-3


@settings(max_examples=40, deadline=None)
@given(n_k=st.integers(2, 60), split=st.integers(1, 59), n_q=st.integers(1, 20), seed=st.integers(0, 1000))
def test_merge_partials_equals_attention_over_the_concatenation(n_k, split, n_q, seed):
    """Flash-decoding / ring attention identity: attention over keys A u B equals the
    log-sum-exp weighted merge of attention over A and over B. Reference: PyTorch SDPA."""
    split = min(split, n_k - 1)
    q, k, v = qkv((2, n_q, 16), n_k=n_k, seed=seed)
    out_a, lse_a = tiled_attention(q, k[..., :split, :], v[..., :split, :], return_lse=True)
    out_b, lse_b = tiled_attention(q, k[..., split:, :], v[..., split:, :], return_lse=True)
    out, lse = merge_partials(out_a, lse_a, out_b, lse_b)
    assert (out - F.scaled_dot_product_attention(q, k, v)).abs().max() <= 1e-5
    assert (lse - torch.logsumexp(q @ k.transpose(-2, -1) / 4.0, dim=-1)).abs().max() <= 1e-5


def test_merge_partials_gives_zero_weight_to_an_empty_part():
    """A part that saw no keys has lse = -inf and contributes nothing, even if its out is garbage."""
    q, k, v = qkv((3, 10, 8))
    out_a, lse_a = tiled_attention(q, k, v, return_lse=True)
    garbage = torch.full_like(out_a, 1e6)
    empty = torch.full_like(lse_a, float("-inf"))
    out, lse = merge_partials(out_a, lse_a, garbage, empty)
    assert torch.equal(lse, lse_a) and (out - out_a).abs().max() <= 1e-6
    out, lse = merge_partials(garbage, empty, garbage, empty)
    assert torch.isneginf(lse).all() and torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n,d,bq,bk", [(37, 16, 8, 5), (64, 8, 16, 16), (100, 4, 33, 7), (5, 2, 64, 64)])
def test_tiled_hbm_count_matches_the_loops_and_a_brute_force(n, d, bq, bk, causal):
    """The closed form equals what the algorithm's loops load and store (HBMTraffic), and a
    brute-force walk over every (query block, key block) tile written plainly here."""
    q, k, v = qkv((2, n, d))
    t = HBMTraffic()
    tiled_attention(q, k, v, causal=causal, block_q=bq, block_k=bk, traffic=t)
    formula = tiled_attention_hbm_elements(n, d, bq, bk, causal, batch_heads=2)
    brute = 0
    for i0 in range(0, n, bq):
        rows = min(bq, n - i0)
        brute += rows * d                                # load Q block
        for j0 in range(0, n, bk):
            if causal and j0 > i0 + rows - 1:
                continue                                 # block entirely in the future
            brute += 2 * min(bk, n - j0) * d             # load K and V blocks
        brute += rows * d + rows                         # store O block and its lse
    assert t.elements == formula == 2 * brute


@pytest.mark.parametrize("n,d", [(1, 1), (17, 8), (64, 32)])
def test_naive_hbm_count_matches_the_algorithm(n, d):
    """Dao et al. 2022, Algorithm 0: S and P are each written once and read once: 4Nd + 4N^2."""
    q, k, v = qkv((3, n, d))
    for causal in (False, True):
        t = HBMTraffic()
        naive_attention(q, k, v, causal, traffic=t)
        assert t.elements == naive_attention_hbm_elements(n, d, batch_heads=3) == 3 * (4 * n * d + 4 * n * n)
    assert naive_attention_hbm_bytes(n, d, dtype_bytes=4) == 4 * naive_attention_hbm_elements(n, d)
    assert t.bytes(2) == 2 * t.elements


def test_io_scaling_follows_dao_et_al_theorem_2():
    """Dao et al. 2022, Theorem 2: standard attention Theta(Nd + N^2), FlashAttention
    Theta(N^2 d^2 / M). Doubling N quadruples both at large N; halving M roughly doubles tiled IO."""
    d, m_bytes = 64, 192 * 1024
    b = blocks_for_sram(m_bytes, d)
    big, bigger = 2 ** 15, 2 ** 16
    assert naive_attention_hbm_bytes(bigger, d) / naive_attention_hbm_bytes(big, d) == pytest.approx(4, rel=0.03)
    assert tiled_attention_hbm_bytes(bigger, d, b, b) / tiled_attention_hbm_bytes(big, d, b, b) == pytest.approx(4, rel=0.03)
    b_half = blocks_for_sram(m_bytes // 2, d)
    ratio = tiled_attention_hbm_bytes(bigger, d, b_half, b_half) / tiled_attention_hbm_bytes(bigger, d, b, b)
    assert ratio == pytest.approx(2, rel=0.03)
    # The constant: tiled / (N^2 d^2 / M) tends to 8 with M counted in elements and blocks M/(4d).
    m_elems = m_bytes // 2
    assert tiled_attention_hbm_elements(bigger, d, b, b) / (bigger ** 2 * d ** 2 / m_elems) == pytest.approx(8, rel=0.03)


def test_blocks_for_sram_is_the_largest_block_whose_four_tiles_fit():
    """Brute force: the largest rows with 4 * rows * d * bytes <= SRAM bytes."""
    for sram, d, nbytes in [(192 * 1024, 64, 2), (192 * 1024, 128, 2), (48 * 1024, 64, 4), (228 * 1024, 128, 2)]:
        rows = max(r for r in range(1, 5000) if 4 * r * d * nbytes <= sram)
        assert blocks_for_sram(sram, d, nbytes) == rows
    assert blocks_for_sram(192 * 1024, 64) == 384


def test_non_causal_tiled_traffic_depends_only_on_the_query_tile():
    """The chapter shrinks block_k to fit the score tile; that must not change the non-causal count.
    With 128-row query tiles at d = 64 the naive/tiled ratio tends to 2 * 128 / 64 = 4 (closed forms
    4N^2 + 4Nd and 2Nd + N + 2Nd * N/128, written out independently here)."""
    n, d = 8192, 64
    counts = {tiled_attention_hbm_elements(n, d, 384, bk) for bk in (16, 32, 64, 384)}
    assert len(counts) == 1
    naive = 4 * n * n + 4 * n * d
    tiled = 2 * n * d + n + 2 * n * d * (n // 128)
    assert tiled_attention_hbm_elements(n, d, 128, 64) == tiled
    assert naive_attention_hbm_elements(n, d) == naive
    assert naive / tiled == pytest.approx(4, rel=0.02)


def test_io_table_and_plot(drawn):
    rows = attention_io_table([256, 1024, 4096], head_dim=64)
    assert [r["seq_len"] for r in rows] == [256, 1024, 4096]
    assert all(r["naive_bytes"] > r["tiled_bytes"] for r in rows)
    assert rows[-1]["ratio"] > rows[0]["ratio"]
    ax = plot_attention_io([256, 512, 1024], head_dim=64, block=32)
    assert len(ax.get_lines()) == 2
    drawn(ax, min_artists=2, title="Attention HBM traffic")


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 6), dim=st.integers(1, 5), splits=st.lists(st.integers(1, 7), min_size=1, max_size=4),
       scale=st.sampled_from([0.5, 4.0, 30.0]), seed=st.integers(0, 999))
def test_online_softmax_steps_equal_one_softmax_over_all_tiles(rows, dim, splits, scale, seed):
    """Folding tiles of scores one at a time, from m = -inf, ends at exactly softmax(all scores) @ V
    (Milakov and Gimelshein 2018); the brute-force reference is torch.softmax over the concatenation."""
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(2, rows, sum(splits), generator=g, dtype=torch.float64) * scale
    v = torch.randn(2, sum(splits), dim, generator=g, dtype=torch.float64)
    m = torch.full((2, rows), float("-inf"), dtype=torch.float64)
    l = torch.zeros(2, rows, dtype=torch.float64)
    acc = torch.zeros(2, rows, dim, dtype=torch.float64)
    j = 0
    for width in splits:
        m, l, acc = online_softmax_step(m, l, acc, s[..., j:j + width], v[..., j:j + width, :])
        j += width
    assert torch.allclose(acc / l.unsqueeze(-1), torch.softmax(s, dim=-1) @ v, atol=1e-12)
    assert torch.allclose(m, s.amax(dim=-1)) and torch.allclose(m + torch.log(l), torch.logsumexp(s, dim=-1))


def test_online_softmax_step_leaves_a_fully_masked_row_empty():
    """A row whose scores are all -inf (causal mask) keeps m = -inf, l = 0, acc = 0 and no NaN."""
    m, l, acc = torch.full((2,), float("-inf")), torch.zeros(2), torch.zeros(2, 3)
    s = torch.tensor([[float("-inf"), float("-inf")], [0.5, 1.0]])
    m, l, acc = online_softmax_step(m, l, acc, s, torch.ones(2, 3))
    assert m[0] == float("-inf") and l[0] == 0 and not acc.isnan().any()
    assert torch.allclose(acc[1] / l[1], torch.ones(3))


@pytest.mark.parametrize("match,args", [
    ("torch.Tensor", lambda m, l, a, s, v: (m.tolist(), l, a, s, v)),
    ("m and l", lambda m, l, a, s, v: (m[:1], l, a, s, v)),
    ("m and l", lambda m, l, a, s, v: (m, l[:1], a, s, v)),
    ("v must be", lambda m, l, a, s, v: (m, l, a, s, v[:1])),
    ("acc", lambda m, l, a, s, v: (m, l, a[:, :1], s, v)),
])
def test_online_softmax_step_rejects_mismatched_shapes(match, args):
    m, l, acc = torch.zeros(3), torch.ones(3), torch.zeros(3, 4)
    s, v = torch.zeros(3, 5), torch.zeros(5, 4)
    with pytest.raises(ValueError, match=match):
        online_softmax_step(*args(m, l, acc, s, v))


BAD_QKV = [
    ("q", lambda q, k, v: ([1, 2], k, v)),
    ("shape", lambda q, k, v: (q[0, 0, :, 0], k, v)),
    ("floating", lambda q, k, v: (q.long(), k, v)),
    ("leading", lambda q, k, v: (q[:, :1], k, v)),
    ("head dim", lambda q, k, v: (q[..., :8], k, v)),
    ("seq length", lambda q, k, v: (q, k, v[..., :5, :])),
    ("seq >= 1", lambda q, k, v: (q[..., :0, :], k, v)),
]


@pytest.mark.parametrize("match,corrupt", BAD_QKV, ids=[b[0] for b in BAD_QKV])
@pytest.mark.parametrize("fn", [naive_attention, tiled_attention])
def test_attention_rejects_bad_tensors(fn, match, corrupt):
    q, k, v = corrupt(*qkv((1, 2, 10, 16)))
    with pytest.raises(ValueError, match=match):
        fn(q, k, v)


def test_attention_rejects_bad_options():
    q, k, v = qkv((1, 10, 16))
    for kwargs, match in [({"causal": 1}, "causal"), ({"scale": 0.0}, "scale"), ({"scale": float("nan")}, "scale"),
                          ({"scale": True}, "scale")]:
        with pytest.raises(ValueError, match=match):
            naive_attention(q, k, v, **kwargs)
    for kwargs, match in [({"block_q": 0}, "block_q"), ({"block_k": 2.5}, "block_k")]:
        with pytest.raises(ValueError, match=match):
            tiled_attention(q, k, v, **kwargs)


def test_merge_partials_rejects_mismatched_shapes():
    o, l = torch.zeros(2, 5, 8), torch.zeros(2, 5)
    with pytest.raises(ValueError, match="lse_a"):
        merge_partials(o, torch.zeros(2, 4), o, l)
    with pytest.raises(ValueError, match="same shape"):
        merge_partials(o, l, torch.zeros(2, 6, 8), torch.zeros(2, 6))
    with pytest.raises(ValueError, match="tensors"):
        merge_partials(o.numpy(), l, o, l)


def test_io_helpers_reject_bad_sizes():
    with pytest.raises(ValueError, match="seq_len"):
        naive_attention_hbm_elements(0, 64)
    with pytest.raises(ValueError, match="head_dim"):
        tiled_attention_hbm_elements(10, -1, 4, 4)
    with pytest.raises(ValueError, match="block_k"):
        tiled_attention_hbm_bytes(10, 8, 4, 0)
    with pytest.raises(ValueError, match="dtype_bytes"):
        naive_attention_hbm_bytes(10, 8, dtype_bytes=0)
    with pytest.raises(ValueError, match="at least"):
        blocks_for_sram(100, 64)
    with pytest.raises(ValueError, match="seq_lens"):
        attention_io_table([])
    with pytest.raises(ValueError, match="dtype_bytes"):
        HBMTraffic().bytes(0)
