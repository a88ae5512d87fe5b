"""Tests for llminfra_lab.engine.server: the OpenAI-compatible HTTP server, over real HTTP on loopback.

References: the official `openai` Python client (blocking, streaming, several threads at once)
against the server on 127.0.0.1; the tiny GPT's own greedy `model.generate` for the text;
OpenAI's error format ({"error": {"message", "type", "param", "code"}}, 4xx statuses);
prometheus-client's own text parser for /metrics.
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import time

import httpx
import openai
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from llminfra_lab import model
from llminfra_lab.engine import SLO, engine_from_args, run_load, summarize
from llminfra_lab.engine.server import MODEL_NAME, free_port, start_server

torch.set_num_threads(1)     # two OpenMP threads on a shared 2-core machine run many times slower


@pytest.fixture(scope="module")
def server():
    engine = engine_from_args(policy="continuous", max_num_seqs=4, num_blocks=64, block_size=16)
    handle = start_server(engine)
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def _reference(engine, prompt: str, n: int) -> str:
    ids = engine.tokenizer.encode(prompt)
    out = model.generate(engine.model, torch.tensor([ids]), n, temperature=0)[0, len(ids):].tolist()
    return engine.tokenizer.decode(out)


def _pool_full(server, timeout_s: float = 20.0) -> bool:
    alloc = server.app.state.engine.cache.allocator
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if alloc.num_free == alloc.num_blocks and not server.app.state.engine.has_unfinished():
            return True
        time.sleep(0.05)
    return False


def test_models_lists_the_tiny_gpt(client):
    assert [m.id for m in client.models.list().data] == [MODEL_NAME]


def test_blocking_completion_equals_reference_greedy(server, client):
    """Greedy text over HTTP equals model.generate's greedy continuation (the chapter's check, end to end)."""
    r = client.completions.create(model=MODEL_NAME, prompt="Once upon a time", max_tokens=20, temperature=0)
    assert r.choices[0].text == _reference(server.app.state.engine, "Once upon a time", 20)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 20 and r.usage.prompt_tokens == 4


def test_streaming_equals_blocking(client):
    blocking = client.completions.create(model=MODEL_NAME, prompt="The cat", max_tokens=16, temperature=0)
    stream = client.completions.create(model=MODEL_NAME, prompt="The cat", max_tokens=16, temperature=0, stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks) == blocking.choices[0].text
    assert len(chunks) > 3 and chunks[-1].choices[0].finish_reason == "length"


def test_chat_template_and_stop(client):
    """The chat template writes the user's line; the reply ends at the newline (the template's end of turn)."""
    r = client.chat.completions.create(model=MODEL_NAME, messages=[{"role": "user", "content": "12+34="}],
                                       temperature=0)
    assert r.choices[0].message.content == "46" and r.choices[0].finish_reason == "stop"
    stream = client.chat.completions.create(model=MODEL_NAME, messages=[{"role": "user", "content": "40+60="}],
                                            temperature=0, stream=True)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "100"


def test_stop_strings_and_seed(client):
    r = client.completions.create(model=MODEL_NAME, prompt="12+34=", max_tokens=30, temperature=0, stop=["+"])
    assert r.choices[0].text == "46\n11" and r.choices[0].finish_reason == "stop"
    a, b = (client.completions.create(model=MODEL_NAME, prompt="Once upon a time", max_tokens=12, temperature=1.0,
                                      top_p=0.9, seed=7).choices[0].text for _ in range(2))
    assert a == b


def test_concurrent_clients_each_get_their_own_answer(server, client):
    """Eight threads at once (more than max_num_seqs = 4): every reply equals its own reference."""
    prompts = ["Once upon a time", "The cat", "12+34=", "One day, a little", "A happy dog named", "7+8=",
               "There was a big red", "Tom and Lily went to the"]

    def ask(prompt):
        return client.completions.create(model=MODEL_NAME, prompt=prompt, max_tokens=12, temperature=0).choices[0].text

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        got = list(pool.map(ask, prompts))
    engine = server.app.state.engine
    assert got == [_reference(engine, p, 12) for p in prompts]
    assert _pool_full(server)


BAD_REQUESTS = [
    ("{not json", 400, None),
    ("[1, 2]", 400, None),
    (json.dumps({"model": "gpt-4", "prompt": "hi"}), 404, "model"),
    (json.dumps({"model": MODEL_NAME}), 400, "prompt"),
    (json.dumps({"model": MODEL_NAME, "prompt": "a " * 300}), 400, "prompt"),
    (json.dumps({"model": MODEL_NAME, "prompt": ""}), 400, "prompt"),
    (json.dumps({"model": MODEL_NAME, "prompt": "hi", "max_tokens": 1000}), 400, "max_tokens"),
    (json.dumps({"model": MODEL_NAME, "prompt": "hi", "max_tokens": 0}), 400, "max_tokens"),
    (json.dumps({"model": MODEL_NAME, "prompt": "hi", "temperature": 3}), 400, "temperature"),
    (json.dumps({"model": MODEL_NAME, "prompt": "hi", "temperature": "hot"}), 400, "temperature"),
    (json.dumps({"model": MODEL_NAME, "prompt": "hi", "top_p": 0}), 400, "top_p"),
    (json.dumps({"model": MODEL_NAME, "prompt": "hi", "top_k": 0}), 400, "top_k"),
    (json.dumps({"model": MODEL_NAME, "prompt": "hi", "stop": ["a", "b", "c", "d", "e"]}), 400, "stop"),
    (json.dumps({"model": MODEL_NAME, "prompt": "hi", "n": 2}), 400, "n"),
    (json.dumps({"model": MODEL_NAME, "prompt": "hi", "seed": -1}), 400, "seed"),
    (json.dumps({"model": MODEL_NAME, "prompt": ["a", "b"]}), 400, "prompt"),
]


@pytest.mark.parametrize("body, status, param", BAD_REQUESTS)
def test_bad_requests_get_openai_errors(server, body, status, param):
    """Each bad request gets its 4xx with an OpenAI-style error body (never a 500, never a hang)."""
    r = httpx.post(server.url + "/v1/completions", content=body, headers={"content-type": "application/json"},
                   timeout=10)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if param is not None:
        assert err["param"] == param


def test_bad_chat_requests(server, client):
    url = server.url + "/v1/chat/completions"
    for messages in ([], [{"role": "robot", "content": "x"}], [{"role": "user"}],
                     [{"role": "user", "content": "1+1="}, {"role": "assistant", "content": "2"}]):
        r = httpx.post(url, json={"model": MODEL_NAME, "messages": messages}, timeout=10)
        assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="maximum context length"):
        client.completions.create(model=MODEL_NAME, prompt="hi", max_tokens=500)


def test_unknown_route_and_method(server):
    assert httpx.get(server.url + "/v2/nothing").json()["error"]["message"] == "Not Found"
    assert httpx.get(server.url + "/v1/completions").status_code == 405


def test_disconnect_mid_stream_frees_blocks(server, client):
    """A client that goes away mid-stream is aborted: the allocator returns to full, the server keeps serving."""
    engine = server.app.state.engine
    body = {"model": MODEL_NAME, "prompt": "Once upon a time", "max_tokens": 200, "temperature": 0, "stream": True}
    with httpx.Client(timeout=30) as http:
        with http.stream("POST", server.url + "/v1/completions", json=body) as resp:
            lines = 0
            for line in resp.iter_lines():
                lines += line.startswith("data:")
                if lines == 3:
                    assert engine.cache.allocator.num_free < engine.cache.allocator.num_blocks
                    break                                   # leaving the block closes the connection
    assert _pool_full(server), "the aborted request's KV blocks were not freed"
    r = client.completions.create(model=MODEL_NAME, prompt="12+34=", max_tokens=2, temperature=0)
    assert r.choices[0].text == "46"


def test_an_engine_failure_fails_its_request_and_the_server_recovers(server, client, monkeypatch):
    """A step that raises must answer 500 (OpenAI-shaped, type server_error), free the blocks, and not hang."""
    engine = server.app.state.engine
    real_step = engine.step
    calls = {"n": 0}

    def broken_step():
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("injected fault")
        return real_step()

    monkeypatch.setattr(engine, "step", broken_step)
    with pytest.raises(openai.InternalServerError, match="injected fault"):
        client.completions.create(model=MODEL_NAME, prompt="Once upon a time", max_tokens=20, temperature=0)
    monkeypatch.setattr(engine, "step", real_step)
    assert _pool_full(server)
    r = client.completions.create(model=MODEL_NAME, prompt="12+34=", max_tokens=2, temperature=0)
    assert r.choices[0].text == "46"


def test_health_and_metrics(server, client):
    assert httpx.get(server.url + "/health").status_code == 200
    client.completions.create(model=MODEL_NAME, prompt="1+1=", max_tokens=3, temperature=0)
    text = httpx.get(server.url + "/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["llminfra_generation_tokens"].samples[0].value >= 3
    assert "llminfra_time_to_first_token_seconds" in families and "llminfra_kv_cache_usage_perc" in families
    reasons = {s.labels.get("finished_reason") for s in families["llminfra_request_success"].samples}
    assert "length" in reasons


def test_load_generator_against_the_server(server):
    records = run_load(server.url, n_requests=6, rate_per_s=20.0, time_limit_s=60, seed=1, max_tokens=(4, 8))
    summary = summarize(records, SLO(ttft_s=60, tpot_s=60))
    assert summary["finished"] == 6 and summary["failed"] == 0
    assert summary["goodput_req_s"] == pytest.approx(summary["throughput_req_s"])
    assert summary["output_tokens"] == sum(r.completion_tokens for r in records) and summary["output_tokens"] >= 24
    assert _pool_full(server)


def test_start_server_checks():
    with pytest.raises(ValueError, match="local address"):
        start_server(None, host="8.8.8.8")
    with pytest.raises(ValueError, match="port must be"):
        start_server(None, port=70000)


@pytest.mark.slow
def test_documented_command_serves(tmp_path):
    """`python -m llminfra_lab.engine.server --port N` starts, answers, and stops on SIGTERM."""
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "llminfra_lab.engine.server", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.2)
        r = httpx.post(f"http://127.0.0.1:{port}/v1/completions", timeout=30,
                       json={"model": MODEL_NAME, "prompt": "12+34=", "max_tokens": 2, "temperature": 0})
        assert r.json()["choices"][0]["text"] == "46"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
