"""Tests for llminfra_lab.inference: prefill/decode costs, KV cache sizes, cached vs uncached
generation, latency metrics, flash-decoding.

References: the chapter's `checks:` (Llama 2 and Llama 3 configurations, the DeepSeek-V3
report) written as numbers; the catalog's own parameter counts; brute-force sums written
here; `model.generate` and a plain loop for generation; torch's scaled_dot_product_attention
for split-KV attention.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from llminfra_lab import inference, memory, roofline
from llminfra_lab.catalog import model_spec
from llminfra_lab.model import GPT, generate, load_pretrained, tiny_config


@pytest.fixture(autouse=True)
def _one_thread():
    """The tiny models run fastest on one thread; two threads on a shared 2-core machine contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- the chapter's checks


def test_kv_bytes_per_token_llama2_7b_and_llama3_70b():
    """chapters.yml check: KV bytes per token = 2 x layers x kv_heads x head_dim x bytes. Llama-2-7B in fp16
    = 512 KiB (32 layers, 32 KV heads of 128: Touvron et al. 2023, its config.json); Llama-3-70B with GQA, 8 KV
    heads, fp16 = 320 KiB (80 layers: Meta-Llama-3-70B config.json, Grattafiori et al. 2024)."""
    for name, layers, kv_heads, kib in (("llama-2-7b", 32, 32, 512), ("llama-3-70b", 80, 8, 320)):
        spec = model_spec(name)
        assert (spec.n_layers, spec.n_kv_heads, spec.head_dim) == (layers, kv_heads, 128)
        assert 2 * layers * kv_heads * 128 * 2 == kib * 1024
        assert inference.kv_cache_bytes(spec, 1, "fp16") == kib * 1024
        assert inference.kv_cache_bytes(name, 4096, "fp16") == 4096 * kib * 1024


def test_deepseek_v3_mla_caches_512_plus_64_values_per_layer():
    """chapters.yml check: DeepSeek-V3 MLA caches (512 + 64) values per layer per token (DeepSeek-AI 2024,
    arXiv:2412.19437: kv_lora_rank 512, qk_rope_head_dim 64, 61 layers; DeepSeek-V2 section 2.1.2)."""
    spec = model_spec("deepseek-v3")
    row = inference.kv_cache_rows(["deepseek-v3"])[0]
    assert row["kind"] == "MLA" and row["values_per_layer"] == 512 + 64
    assert inference.kv_cache_bytes(spec, 1, "bf16") == 61 * 576 * 2
    # what MHA with the same 128 heads (keys 128 + 64 wide, values 128) would cache: 71 times more
    mha = 61 * 128 * (192 + 128) * 2
    assert mha / inference.kv_cache_bytes(spec, 1) == pytest.approx(71.1, abs=0.1)


def test_attention_kinds_from_real_configs():
    """MHA (Llama-2-7B), MQA (Gemma-2B: 1 KV head, Gemma Team 2024), GQA (Llama-3-70B), MLA (DeepSeek-V3)."""
    kinds = {n: inference.attention_kind(model_spec(n)) for n in ("llama-2-7b", "gemma-2b", "llama-3-70b",
                                                                   "deepseek-v3")}
    assert kinds == {"llama-2-7b": "MHA", "gemma-2b": "MQA", "llama-3-70b": "GQA", "deepseek-v3": "MLA"}
    gemma = model_spec("gemma-2b")
    assert gemma.total_params() == 2_506_172_416          # the checkpoint's count, embedding once (tied)
    assert inference.kv_cache_bytes(gemma, 1) == 18 * 2 * 1 * 256 * 2   # 18 KiB per token


# ----------------------------------------------------------------------------- prefill and decode costs


@pytest.mark.parametrize("name", ["llama-3-70b", "qwen2.5-7b", "mixtral-8x7b", "deepseek-v3", "gemma-2b"])
def test_linear_shapes_count_the_catalogs_weights(name):
    """The matrices a token passes through add up to the catalog's active parameter count (without the
    embedding lookup, norms and biases, which do no matrix product)."""
    spec = model_spec(name)
    parts = spec.param_breakdown(active=True)
    want = parts["attention"] + parts["ffn"] + parts["router"] + parts["lm_head"] or 0
    if spec.tied_embeddings:
        want += parts["embedding"]                         # the tied head still multiplies
    shapes = inference.linear_shapes(spec)
    n_moe = spec.n_layers - spec.n_dense_layers if spec.is_moe else 0
    per = lambda mats: sum(a * b for a, b in mats)  # noqa: E731
    got = (spec.n_layers * per(shapes["attention"]) + (spec.n_layers - n_moe) * per(shapes["dense_ffn"])
           + n_moe * ((spec.experts_per_token + spec.n_shared_experts) * per(shapes["expert"]) + per(shapes["router"]))
           + spec.vocab_size * spec.d_model)
    assert got == pytest.approx(want, rel=2e-4)


def test_decode_flops_are_two_per_active_weight_plus_attention():
    """Brute force: a decode step of b sequences at context c does 2 x active weights x b FLOPs in the linear
    layers, and 4 x heads x head_dim x (c + 1) x layers per sequence in attention (QK^T and PV)."""
    spec = model_spec("llama-3-8b")
    b, c = 8, 1000
    cost = inference.decode_cost(spec, b, c)
    active = spec.active_params() - spec.param_breakdown()["embedding"] - spec.param_breakdown()["norms"]
    assert cost.linear_flops == pytest.approx(2 * active * b, rel=1e-9)
    assert cost.attention_flops == pytest.approx(b * 4 * 32 * 128 * (c + 1) * 32, rel=1e-9)
    assert cost.kv_read_bytes == b * c * memory.kv_cache_bytes_per_token(spec)
    assert isinstance(cost.kernel, roofline.KernelCost) and cost.phase == "decode"


def test_prefill_attention_pairs_are_causal():
    """A prompt of n tokens forms n(n+1)/2 query-key pairs per head (brute-force count)."""
    spec, n = model_spec("llama-2-7b"), 37
    pairs = sum(1 for i in range(n) for j in range(n) if j <= i)
    cost = inference.prefill_cost(spec, 2, n)
    assert cost.attention_flops == pytest.approx(2 * pairs * 32 * 4 * 128 * 32, rel=1e-12)
    assert cost.phase == "prefill" and cost.kv_write_bytes == 2 * n * memory.kv_cache_bytes_per_token(spec)


def test_decode_is_memory_bound_and_prefill_compute_bound_on_h100():
    """Decode at batch 1 sits near 1 FLOP/byte in BF16 (2 FLOPs per 2-byte weight); a 2,048-token prefill is
    far right of the H100's ridge point (about 295 FLOP/byte, chapter 2)."""
    d = inference.decode_cost("llama-3-70b", 1, 2048)
    p = inference.prefill_cost("llama-3-70b", 1, 2048)
    assert 0.9 < d.intensity < 1.2 and roofline.is_memory_bound(d.kernel, "H100-SXM")
    assert p.intensity > 1000 and not roofline.is_memory_bound(p.kernel, "H100-SXM")


def test_decode_crossover_batch():
    """Short context: decode becomes compute-bound near batch = ridge point (H100 ~295). Long context with GQA:
    each sequence's KV cache keeps the intensity below the ridge at any batch (None). MHA stays memory-bound."""
    short = inference.decode_crossover_batch("llama-3-70b", "H100-SXM", 128)
    assert 295 < short < 400
    assert inference.decode_cost("llama-3-70b", short, 128).intensity >= 295.3
    assert inference.decode_cost("llama-3-70b", short - 1, 128).intensity < 295.4
    assert inference.decode_crossover_batch("llama-3-70b", "H100-SXM", 8192) is None
    assert inference.decode_crossover_batch("llama-2-7b", "H100-SXM", 1024) is None
    # a wider-bandwidth chip has a lower ridge, hence a smaller crossover batch
    assert inference.decode_crossover_batch("llama-3-70b", "H200-SXM", 128) < short


def test_moe_decode_reads_only_touched_experts():
    """Batch 1 of Mixtral touches 2 of 8 experts per layer; a big batch touches nearly all of them."""
    one = inference.decode_cost("mixtral-8x7b", 1, 16)
    many = inference.decode_cost("mixtral-8x7b", 512, 16)
    assert one.weight_bytes < 0.35 * inference.weight_bytes("mixtral-8x7b")
    assert many.weight_bytes == pytest.approx(inference.weight_bytes("mixtral-8x7b"), rel=0.01)


def test_max_concurrent_requests_brute_force():
    """Requests fit while weights + n x KV per request <= 0.9 x HBM (brute force over n)."""
    spec = model_spec("llama-3-8b")
    n = inference.max_concurrent_requests(spec, "H100-SXM", 4096)
    budget = 80e9 * 0.9 - spec.total_params() * 2
    per = 4096 * 128 * 1024
    assert n * per <= budget < (n + 1) * per
    assert inference.max_concurrent_requests("llama-3-70b", "H100-SXM", 4096) == 0     # 141 GB of weights
    assert inference.max_concurrent_requests("llama-3-70b", "H100-SXM", 4096, n_gpus=8) > 300
    assert inference.max_concurrent_requests(spec, "H100-SXM", 4096, kv_dtype="fp8") in (2 * n, 2 * n + 1)


# ----------------------------------------------------------------------------- generation


@pytest.fixture(scope="module")
def target():
    gpt, tok = load_pretrained("target")
    return gpt, tok


def test_cached_generation_equals_uncached_on_the_shipped_model(target):
    """KV-cached greedy decoding (model.generate and the timed loop) gives exactly the tokens of the plain
    loop that reruns the whole sequence every step."""
    gpt, tok = target
    idx = torch.tensor([tok.encode("Once upon a time"), tok.encode("12+30=42. The cat")[:4]], dtype=torch.long)
    plain = inference.greedy_uncached(gpt, idx, 40)
    assert torch.equal(generate(gpt, idx, 40, temperature=0.0), plain)
    cached, times = inference.greedy_cached_timed(gpt, idx, 40)
    assert torch.equal(cached, plain) and len(times) == 41


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), prompt=st.integers(1, 20), new=st.integers(1, 12), batch=st.integers(1, 3))
def test_cached_equals_uncached_property(seed, prompt, new, batch):
    """For random models and prompts the cache changes the work, never the tokens."""
    gpt = GPT(tiny_config("test"), seed=seed).eval()
    idx = torch.randint(0, 64, (batch, prompt), generator=torch.Generator().manual_seed(seed))
    assert torch.equal(inference.greedy_cached_timed(gpt, idx, new)[0], inference.greedy_uncached(gpt, idx, new))


def test_latency_metrics_follow_the_opentelemetry_definitions():
    """gen_ai.server.time_to_first_token = first token - start; time_per_output_token = mean gap after the
    first token; request.duration = last - start; throughput = batch x tokens / duration."""
    times = [10.0, 10.5, 10.6, 10.8, 11.1]
    m = inference.latency_metrics(times, batch=4)
    assert m.ttft_s == pytest.approx(0.5) and m.e2e_s == pytest.approx(1.1)
    assert m.tpot_s == pytest.approx((11.1 - 10.5) / 3) and m.output_tokens == 4
    assert m.throughput_tok_s == pytest.approx(16 / 1.1)
    assert math.isnan(inference.latency_metrics([0.0, 0.2]).tpot_s)
    assert set(inference.OTEL_METRICS) == {"gen_ai.server.time_to_first_token",
                                           "gen_ai.server.time_per_output_token", "gen_ai.server.request.duration"}


def test_measure_generation_returns_sane_timings(target):
    gpt, tok = target
    idx = torch.tensor([tok.encode("Once upon a time")], dtype=torch.long)
    for use_cache in (True, False):
        m = inference.measure_generation(gpt, idx, 4, use_cache=use_cache, repeats=1)
        assert m.ttft_s > 0 and m.tpot_s > 0 and m.output_tokens == 4 and m.e2e_s >= m.ttft_s


# ----------------------------------------------------------------------------- flash-decoding


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), length=st.integers(1, 300), splits=st.integers(1, 17),
       kv_heads=st.sampled_from([1, 2, 4]), group=st.sampled_from([1, 2, 4]), rows=st.integers(1, 3))
def test_split_kv_equals_sdpa(seed, length, splits, kv_heads, group, rows):
    """Split-KV attention merged with attention.merge_partials equals torch's scaled_dot_product_attention over
    the whole cache (float32, 1e-5), for any number of chunks, MHA/GQA/MQA head layouts and 1-3 query rows."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, kv_heads * group, rows, 16, generator=g)
    k, v = torch.randn(2, kv_heads, length, 16, generator=g), torch.randn(2, kv_heads, length, 16, generator=g)
    want = F.scaled_dot_product_attention(q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1))
    got = inference.split_kv_attention(q, k, v, splits)
    assert (got - want).abs().max() <= 1e-5


def test_chunk_attention_lse_and_split_bounds():
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(3, 8, generator=g), torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    out, lse = inference.chunk_attention(q, k, v)
    assert torch.allclose(lse, torch.logsumexp(q @ k.T / math.sqrt(8), -1), atol=1e-6)
    assert torch.allclose(out, torch.softmax(q @ k.T / math.sqrt(8), -1) @ v, atol=1e-6)
    assert inference.split_bounds(10, 3) == [(0, 4), (4, 8), (8, 10)]
    assert inference.split_bounds(3, 8) == [(0, 1), (1, 2), (2, 3)]
    assert inference.decode_work_items(1, 8, 65536) == 8
    assert inference.decode_work_items(1, 8, 65536, n_splits=32) == 256


def test_batching_timelines():
    """Static batching waits for the longest request of each batch; continuous refills a slot the step after
    its request ends, so the same work takes fewer steps and no request is dropped."""
    lens = [6, 2, 3, 8, 2, 4, 3, 5]
    lines = inference.batching_timelines(lens, 4)
    for policy, rows in lines.items():
        for r, n in enumerate(lens):
            assert sum(row.count(r) for row in rows) == n, policy
    assert len(lines["static"][0]) == 8 + 5 and len(lines["continuous"][0]) < 13


# ----------------------------------------------------------------------------- input checks


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="batch must be an int >= 1"):
        inference.decode_cost("llama-3-8b", 0, 10)
    with pytest.raises(ValueError, match="context must be an int >= 1"):
        inference.decode_cost("llama-3-8b", 1, 0)
    with pytest.raises(ValueError, match="new_tokens must be an int >= 1"):
        inference.phase_cost("llama-3-8b", 1, 0)
    with pytest.raises(ValueError, match="spec must be a catalog ModelSpec"):
        inference.phase_cost(3, 1, 1)
    with pytest.raises(KeyError, match="unknown model"):
        inference.prefill_cost("gpt-5", 1, 10)
    with pytest.raises(ValueError, match="unknown dtype"):
        inference.decode_cost("llama-3-8b", 1, 10, dtype="bf17")
    with pytest.raises(KeyError, match="unknown accelerator"):
        inference.decode_crossover_batch("llama-3-8b", "Z100", 10)
    with pytest.raises(ValueError, match="memory_fraction must be in"):
        inference.max_concurrent_requests("llama-3-8b", "H100", 10, memory_fraction=1.5)
    with pytest.raises(ValueError, match="tokens_per_request must be an int >= 1"):
        inference.max_concurrent_requests("llama-3-8b", "H100", 0)
    with pytest.raises(ValueError, match="spec must be a catalog ModelSpec"):
        inference.attention_kind("llama-3-8b")
    with pytest.raises(ValueError, match="spec must be a catalog ModelSpec"):
        inference.linear_shapes(None)
    with pytest.raises(ValueError, match="names must list"):
        inference.kv_cache_rows([])
    with pytest.raises(ValueError, match="tokens must be an int >= 0"):
        inference.kv_cache_bytes("llama-3-8b", -1)
    with pytest.raises(ValueError, match="spec must be a catalog ModelSpec"):
        inference.weight_bytes(1.0)


def test_bad_generation_and_attention_inputs_raise():
    gpt = GPT(tiny_config("test"))
    with pytest.raises(ValueError, match="model must be a model.GPT"):
        inference.greedy_uncached("gpt", torch.zeros(1, 2, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="exceed max_seq_len"):
        inference.greedy_cached_timed(gpt, torch.zeros(1, 60, dtype=torch.long), 10)
    with pytest.raises(ValueError, match="max_new_tokens must be an int >= 1"):
        inference.greedy_uncached(gpt, torch.zeros(1, 2, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="times must be"):
        inference.latency_metrics([1.0])
    with pytest.raises(ValueError, match="non-decreasing"):
        inference.latency_metrics([1.0, 0.5])
    with pytest.raises(ValueError, match="repeats must be an int >= 1"):
        inference.measure_generation(gpt, torch.zeros(1, 2, dtype=torch.long), 2, repeats=0)
    q, k = torch.randn(1, 3, 1, 8), torch.randn(1, 2, 5, 8)
    with pytest.raises(ValueError, match="multiple of k's KV heads"):
        inference.split_kv_attention(q, k, k, 2)
    with pytest.raises(ValueError, match="k and v must match"):
        inference.split_kv_attention(torch.randn(1, 2, 1, 8), k, torch.randn(1, 2, 4, 8), 2)
    with pytest.raises(ValueError, match="must be a floating-point tensor"):
        inference.split_kv_attention(torch.randn(2, 1, 8), k, k, 2)
    with pytest.raises(ValueError, match="n_splits must be an int >= 1"):
        inference.split_kv_attention(torch.randn(1, 2, 1, 8), k, k, 0)
    with pytest.raises(ValueError, match="slots must be an int >= 1"):
        inference.batching_timelines([1, 2], 0)
    with pytest.raises(ValueError, match="output_lens must list"):
        inference.batching_timelines([], 2)


# ----------------------------------------------------------------------------- figures


def test_plots_draw(drawn):
    drawn(inference.plot_phase_roofline(), min_artists=5, title="prefill and decode")
    drawn(inference.plot_decode_intensity(), min_artists=6, title="decode step")
    drawn(inference.plot_kv_per_token(), min_artists=8)
    drawn(inference.plot_split_kv_schematic(), min_artists=10, title="Flash-decoding")
    drawn(inference.plot_batching_schematic(), min_artists=20, title="continuous batching")
    drawn(inference.plot_latency_bench(), min_artists=4, title="Per-token step time")


def test_shipped_bench_shape():
    """benchmarks/bench_inference.py's results: TTFT grows with the prompt, cached steps stay flat while
    uncached ones grow with the sequence, and batching raises throughput."""
    r = inference.load_bench()
    assert r["made_by"] == "benchmarks/bench_inference.py"
    assert r["ttft"][-1]["ttft_ms"] > r["ttft"][0]["ttft_ms"]
    assert r["steps"]["uncached_step_ms"][-1] > 3 * r["steps"]["cached_step_ms"][-1]
    assert r["batch"][-1]["throughput_tok_s"] > 3 * r["batch"][0]["throughput_tok_s"]
