"""Tests for llminfra_lab.engine: the engine loop, sampling, stop strings, chat template, load generator.

References: the tiny GPT's own `model.generate` (greedy, and seeded sampling with the same
torch.Generator); PyTorch's softmax and a plainly written top-k / top-p filter; numpy's
percentile; the exponential distribution's mean for Poisson gaps; prometheus-client's parser.
The server itself is tested over real HTTP in tests/test_server.py.
"""
from __future__ import annotations

import math
import statistics

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from llminfra_lab import model
from llminfra_lab.engine import (
    SLO,
    Engine,
    EngineMetrics,
    RequestRecord,
    SamplingParams,
    apply_chat_template,
    emit_safe_length,
    engine_from_args,
    goodput,
    make_workload,
    percentile,
    plot_engine_schematic,
    plot_latency_percentiles,
    plot_throughput_goodput,
    poisson_arrivals,
    run_load,
    sample_token,
    sampling_probs,
    stop_position,
    summarize,
)
from llminfra_lab.paged import SchedulerConfig

torch.set_num_threads(1)     # two OpenMP threads on a shared 2-core machine run many times slower

PROMPTS = ["Once upon a time", "12+34=", "The cat", "One day, a little girl"]


@pytest.fixture(scope="module")
def target():
    return model.load_pretrained("target")


def _reference(gpt, tok, prompt, n, **kw):
    ids = tok.encode(prompt)
    return model.generate(gpt, torch.tensor([ids]), n, **kw)[0, len(ids):].tolist()


@pytest.mark.parametrize("config", [
    pytest.param(SchedulerConfig(policy="continuous", max_num_seqs=4), id="continuous"),
    pytest.param(SchedulerConfig(policy="static", max_num_seqs=2), id="static", marks=pytest.mark.slow),
    pytest.param(SchedulerConfig(chunked_prefill=True, chunk_size=3, max_num_batched_tokens=8), id="chunked",
                 marks=pytest.mark.slow),
    pytest.param(SchedulerConfig(preemption="swap", max_num_seqs=4), id="swap", marks=pytest.mark.slow),
])
def test_greedy_equals_reference_generate(target, config):
    """chapters.yml check: the engine's greedy output equals the tiny GPT's reference greedy generation
    (`model.generate`, temperature 0) token for token, under every scheduler setting, with requests of
    different lengths sharing the batch and, in a pool of 12 blocks of 8 (96 tokens for 155), preempted
    when it runs out."""
    gpt, tok = target
    engine = Engine(gpt, tok, num_blocks=12, block_size=8, scheduler_config=config)
    lengths = (40, 12, 40, 25)
    outs = engine.generate(PROMPTS, [SamplingParams(temperature=0, max_tokens=n) for n in lengths])
    for prompt, out, n in zip(PROMPTS, outs, lengths):
        assert out.token_ids == _reference(gpt, tok, prompt, n, temperature=0)
        assert out.finish_reason == "length" and out.text == tok.decode(out.token_ids)
    assert engine.cache.allocator.num_free == 12 and not engine.has_unfinished()


def test_seeded_sampling_equals_generate_with_the_same_generator(target):
    """A request's seed seeds its own generator: the draw equals model.generate with that generator,
    whoever else shares the batch."""
    gpt, tok = target
    engine = Engine(gpt, tok, num_blocks=64, block_size=16)
    sp = SamplingParams(temperature=0.8, top_k=50, top_p=0.9, max_tokens=24, seed=3)
    alone = engine.generate(["Once upon a time"], sp)[0]
    crowd = engine.generate(["The cat", "Once upon a time", "7+8="],
                            [SamplingParams(temperature=1.0, max_tokens=30, seed=1), sp,
                             SamplingParams(temperature=1.0, max_tokens=5, seed=2)])[1]
    ref = _reference(gpt, tok, "Once upon a time", 24, temperature=0.8, top_k=50, top_p=0.9,
                     generator=torch.Generator().manual_seed(3))
    assert alone.token_ids == crowd.token_ids == ref


def test_stop_strings_end_a_request_and_free_its_blocks(target):
    gpt, tok = target
    engine = Engine(gpt, tok, num_blocks=64, block_size=16)
    out = engine.generate(["12+34="], SamplingParams(temperature=0, max_tokens=30, stop=("\n",)))[0]
    assert out.text == "46" and out.finish_reason == "stop"
    out = engine.generate(["12+34="], SamplingParams(temperature=0, max_tokens=30, stop=("=1", "+1")))[0]
    assert out.text == "46\n11" and out.finish_reason == "stop"
    assert engine.cache.allocator.num_free == 64 and not engine.scheduler.requests


def test_preemption_happened_in_a_small_pool(target):
    gpt, tok = target
    engine = Engine(gpt, tok, num_blocks=12, block_size=8)
    ids = [engine.add_request(p, SamplingParams(temperature=0, max_tokens=n)) for p, n in zip(PROMPTS, (40, 12, 40, 25))]
    preempted = 0
    while engine.has_unfinished():
        engine.step()
        preempted = max(preempted, sum(r.num_preemptions for r in engine.scheduler.requests.values()))
    assert len(ids) == 4 and preempted >= 1


def test_step_streams_every_token_once(target):
    gpt, tok = target
    engine = Engine(gpt, tok, num_blocks=64, block_size=16)
    rid = engine.add_request("Once upon a time", SamplingParams(temperature=0, max_tokens=15))
    pieces, outs = [], []
    while engine.has_unfinished():
        for out in engine.step():
            pieces.append(out.new_text)
            outs.append(out)
    assert outs[-1].request_id == rid and outs[-1].finished and len(outs) == 15
    assert "".join(pieces) == outs[-1].text and outs[-1].first_token_time >= outs[-1].arrival_time


def test_abort_returns_blocks(target):
    gpt, tok = target
    engine = Engine(gpt, tok, num_blocks=64, block_size=16)
    a = engine.add_request("Once upon a time", SamplingParams(temperature=0, max_tokens=100))
    b = engine.add_request("The cat", SamplingParams(temperature=0, max_tokens=100))
    for _ in range(5):
        engine.step()
    assert engine.cache.allocator.num_free < 64 and engine.stats()["running"] == 2
    assert engine.abort(a) and engine.abort(b) and not engine.abort("nope")
    assert engine.cache.allocator.num_free == 64 and engine.stats() == {"running": 0, "waiting": 0, "kv_usage": 0.0}
    assert engine.step() == []


def test_engine_checks(target):
    gpt, tok = target
    with pytest.raises(ValueError, match="model must be a GPT"):
        Engine("gpt")
    with pytest.raises(ValueError, match="can never fit the KV pool"):
        Engine(gpt, tok, num_blocks=2, block_size=8).add_request([1] * 10, SamplingParams(max_tokens=10))
    with pytest.raises(ValueError, match="scheduler_config must be"):
        Engine(gpt, tok, scheduler_config={"policy": "static"})
    engine = Engine(gpt, None, num_blocks=64, block_size=16)
    with pytest.raises(ValueError, match="needs an engine with a tokenizer"):
        engine.add_request("hello")
    with pytest.raises(ValueError, match="non-empty list of token ids"):
        engine.add_request([])
    with pytest.raises(ValueError, match="non-empty list of token ids"):
        engine.add_request([512])
    with pytest.raises(ValueError, match="params must be a SamplingParams"):
        engine.add_request([1], {"temperature": 0})
    with pytest.raises(ValueError, match="exceed the context"):
        engine.add_request([1] * 250, SamplingParams(max_tokens=10))
    engine.add_request([1], request_id="x")
    with pytest.raises(ValueError, match="already in use"):
        engine.add_request([1], request_id="x")
    with pytest.raises(ValueError, match="prompts must be"):
        engine.generate([])
    with pytest.raises(ValueError, match="SamplingParams for"):
        engine.generate([[1]], [SamplingParams(), SamplingParams()])
    with pytest.raises(ValueError, match="policy must be"):
        engine_from_args(policy="fifo")


@pytest.mark.parametrize("kwargs, match", [
    ({"temperature": -0.1}, "temperature"), ({"temperature": 2.5}, "temperature"),
    ({"temperature": float("nan")}, "temperature"), ({"top_p": 0}, "top_p"), ({"top_p": 1.2}, "top_p"),
    ({"top_k": 0}, "top_k"), ({"top_k": 2.5}, "top_k"), ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": True}, "max_tokens"), ({"stop": ("",)}, "stop"), ({"stop": (1,)}, "stop"),
    ({"stop": tuple("abcde")}, "at most 4"), ({"seed": -1}, "seed"), ({"seed": 1.5}, "seed"),
])
def test_sampling_params_checks(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SamplingParams(**kwargs)


def test_sampling_params_accept_a_single_stop_string():
    assert SamplingParams(stop="\n").stop == ("\n",) and SamplingParams(stop=["a", "b"]).stop == ("a", "b")


def _plain_probs(logits, temperature, top_k, top_p):
    """Brute force: temperature, top-k by rank, top-p by walking the sorted list, renormalise."""
    z = [x / temperature for x in logits.tolist()]
    order = sorted(range(len(z)), key=lambda i: -z[i])
    keep = set(order[:top_k] if top_k else order)
    m = max(z[i] for i in keep)
    w = {i: math.exp(z[i] - m) for i in keep}
    total = sum(w.values())
    if top_p is not None and top_p < 1:
        mass, kept = 0.0, set()
        for i in [i for i in order if i in keep]:
            if mass >= top_p:
                break
            kept.add(i)
            mass += w[i] / total
        keep = kept
    total = sum(w[i] for i in keep)
    return [w[i] / total if i in keep else 0.0 for i in range(len(z))]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-40, 40), min_size=2, max_size=20, unique=True).map(lambda v: [x / 5 for x in v]),
       st.sampled_from([0.3, 1.0, 1.7]),
       st.sampled_from([None, 1, 3]), st.sampled_from([None, 0.5, 0.9, 1.0]))
def test_sampling_probs_match_a_plain_filter(values, temperature, top_k, top_p):
    got = sampling_probs(torch.tensor(values, dtype=torch.float64), temperature, top_k, top_p)
    assert got.tolist() == pytest.approx(_plain_probs(torch.tensor(values), temperature, top_k, top_p), abs=1e-6)


def test_sample_token_checks_and_greedy():
    logits = torch.tensor([0.1, 3.0, -1.0])
    assert sample_token(logits, SamplingParams(temperature=0)) == 1
    assert sample_token(logits, SamplingParams(temperature=1.0, top_k=1), torch.Generator().manual_seed(0)) == 1
    with pytest.raises(ValueError, match="1-D tensor"):
        sample_token(logits[None], SamplingParams())
    with pytest.raises(ValueError, match="params must be"):
        sample_token(logits, None)
    with pytest.raises(ValueError, match="temperature must be a number > 0"):
        sampling_probs(logits, 0)


def test_stop_position_and_safe_length():
    assert stop_position("46\n11", ("\n",)) == 2 and stop_position("abc", ("x",)) is None
    assert stop_position("a+b=c", ("=", "+")) == 1
    assert emit_safe_length("Hello wor", ("world",)) == 6
    assert emit_safe_length("caf\ufffd", ()) == 3
    assert emit_safe_length("x ##", ("###",)) == 2
    assert emit_safe_length("plain", ("\n",)) == 5


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab#\n", max_size=12), st.lists(st.text(alphabet="ab#\n", min_size=1, max_size=4), max_size=3))
def test_safe_length_never_leaks_a_stop_prefix(text, stops):
    """Brute force: no stop string may start inside the streamed part (whatever text follows), and the
    first held-back character is the start of a possible stop string."""
    stops = tuple(s for s in stops if s not in text)
    k = emit_safe_length(text, stops)
    for p in range(k):
        assert not any(len(text) - p < len(s) and s.startswith(text[p:]) for s in stops), (text, stops, k)
    if k < len(text):
        assert any(len(text) - k < len(s) and s.startswith(text[k:]) for s in stops), (text, stops, k)


def test_chat_template():
    assert apply_chat_template([{"role": "system", "content": "Add."}, {"role": "user", "content": "12+34="}]) \
        == "Add.\n12+34="
    assert apply_chat_template([{"role": "user", "content": "1+1="}, {"role": "assistant", "content": "2"},
                                {"role": "user", "content": "2+2="}]) == "1+1=2\n2+2="
    for bad, match in (([], "non-empty list"), ([{"role": "user"}], "string 'content'"),
                       ([{"role": "tool", "content": "x"}], "role"),
                       ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "last message")):
        with pytest.raises(ValueError, match=match):
            apply_chat_template(bad)


def test_poisson_arrivals_have_exponential_gaps():
    times = poisson_arrivals(20000, 4.0, seed=0)
    gaps = [b - a for a, b in zip([0.0] + times, times)]
    assert statistics.fmean(gaps) == pytest.approx(0.25, rel=0.03)
    assert statistics.pstdev(gaps) == pytest.approx(0.25, rel=0.05)          # exponential: sd = mean
    assert poisson_arrivals(5, 2.0, seed=1) == poisson_arrivals(5, 2.0, seed=1)
    with pytest.raises(ValueError, match="rate_per_s"):
        poisson_arrivals(3, 0.0)
    with pytest.raises(ValueError, match="n must be"):
        poisson_arrivals(0, 1.0)


def test_workload_and_percentile():
    work = make_workload(50, seed=0, max_tokens=(4, 9))
    assert len(work) == 50 and all(4 <= m <= 9 and p for p, m in work)
    with pytest.raises(ValueError, match="low <= high"):
        make_workload(3, max_tokens=(9, 4))
    values = [0.3, 0.1, 0.7, 0.2, 0.9, 0.5]
    assert percentile(values, 50) == pytest.approx(statistics.median(values))
    assert percentile(values, 90) == pytest.approx(statistics.quantiles(values, n=10, method="inclusive")[-1])
    assert percentile([], 50) is None
    with pytest.raises(ValueError, match="q must be"):
        percentile(values, 101)


def test_goodput_and_summary():
    slo = SLO(ttft_s=1.0, tpot_s=0.1)
    assert goodput([0.5, 2.0, None, 0.2], [0.05, 0.05, None, 0.3], 2.0, slo) == 0.5
    assert goodput([0.5], [None], 1.0, slo) == 1.0
    records = [RequestRecord(0.0, 0.5, 1.5, 11, True), RequestRecord(0.5, 1.5, 2.0, 6, True),
               RequestRecord(1.0, error="HTTP 400")]
    s = summarize(records, slo)
    assert s["duration_s"] == pytest.approx(2.5) and s["finished"] == 2 and s["failed"] == 1
    assert s["throughput_tok_s"] == pytest.approx(17 / 2.5) and s["goodput_req_s"] == pytest.approx(1 / 2.5)
    assert s["tpot_p50_s"] == pytest.approx((0.1 + 0.1) / 2) and s["slo_attainment"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="one entry per request"):
        goodput([0.1], [], 1.0, slo)
    with pytest.raises(ValueError, match="non-empty"):
        summarize([])
    with pytest.raises(ValueError, match="SLO.ttft_s"):
        SLO(ttft_s=0)


def test_load_generator_refuses_other_hosts():
    with pytest.raises(ValueError, match="only targets this machine"):
        run_load("http://example.com:8000", 2)


def test_metrics_render_in_prometheus_format():
    m = EngineMetrics()
    m.observe_finished("length", 0.2, 1.2, 11)
    m.set_load(2, 1, 0.25)
    families = {f.name: f for f in text_string_to_metric_families(m.render().decode())}
    tpot = {s.name: s.value for s in families["llminfra_time_per_output_token_seconds"].samples}
    assert tpot["llminfra_time_per_output_token_seconds_sum"] == pytest.approx(0.1)
    assert families["llminfra_kv_cache_usage_perc"].samples[0].value == 0.25
    with pytest.raises(ValueError, match="prefix"):
        EngineMetrics("bad prefix")


def test_plots(drawn):
    drawn(plot_engine_schematic(), min_artists=10, title="engine")
    result = {"ttft_p50_s": 0.1, "ttft_p90_s": 0.2, "ttft_p99_s": 0.3, "tpot_p50_s": 0.01, "tpot_p90_s": 0.02,
              "tpot_p99_s": 0.03, "throughput_tok_s": 50.0, "goodput_req_s": 1.0, "throughput_req_s": 1.5}
    axes = plot_latency_percentiles({"static": result, "continuous": result})
    drawn(axes[0], min_artists=6, title="first token")
    drawn(plot_throughput_goodput({"static": result, "continuous": result}), min_artists=2, title="goodput")
    with pytest.raises(ValueError, match="non-empty dict"):
        plot_latency_percentiles({})
    with pytest.raises(ValueError, match="non-empty dict"):
        plot_throughput_goodput([])
