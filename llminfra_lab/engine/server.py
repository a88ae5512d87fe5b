"""An OpenAI-compatible HTTP server for the engine: FastAPI + uvicorn, streaming over SSE.

    python -m llminfra_lab.engine.server --port 8000 [--policy continuous] [--max-num-seqs 8]

Endpoints: GET /v1/models, POST /v1/completions, POST /v1/chat/completions (blocking, or
streamed with "stream": true as server-sent events ending in "data: [DONE]"), GET /health,
GET /metrics (Prometheus text format). Errors are OpenAI-shaped JSON bodies,
{"error": {"message", "type", "param", "code"}}, with a 4xx status for every bad request.

One thread owns the engine (`EngineLoop`): HTTP handlers never touch it; they send "add" and
"abort" commands through a queue and read their request's outputs from an asyncio queue the
engine thread fills. A streaming client that goes away is aborted, which frees its KV blocks.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import queue
import socket
import threading
import time
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, ValidationError
from sse_starlette.sse import EventSourceResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from llminfra_lab.engine.core import Engine, RequestOutput, engine_from_args
from llminfra_lab.engine.metrics import CONTENT_TYPE_LATEST, EngineMetrics
from llminfra_lab.engine.sampling import SamplingParams, apply_chat_template

__all__ = ["MODEL_NAME", "EngineLoop", "create_app", "ServerHandle", "start_server", "free_port", "main"]

MODEL_NAME = "tiny-gpt"


class APIError(Exception):
    """A request the server refuses: HTTP status plus the OpenAI error fields."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status)


# ----------------------------------------------------------------------------- the engine's thread

class EngineLoop:
    """Runs `engine.step()` in a thread of its own and routes each output to its request's queue."""

    def __init__(self, engine: Engine, metrics: EngineMetrics):
        self.engine, self.metrics = engine, metrics
        self._commands: queue.Queue = queue.Queue()
        self._sinks: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}
        self._stop = threading.Event()
        self._ids = itertools.count()
        self._thread = threading.Thread(target=self._run, name="engine-loop", daemon=True)
        self._thread.start()

    def submit(self, prompt_ids: list[int], params: SamplingParams) -> tuple[str, asyncio.Queue]:
        """Queue a request; its RequestOutputs arrive on the returned asyncio queue."""
        request_id = f"cmpl-{next(self._ids)}"
        sink: asyncio.Queue = asyncio.Queue()
        self._sinks[request_id] = (asyncio.get_running_loop(), sink)
        self._commands.put(("add", request_id, prompt_ids, params))
        return request_id, sink

    def abort(self, request_id: str) -> None:
        self._commands.put(("abort", request_id, None, None))

    def stop(self) -> None:
        self._stop.set()
        self._commands.put(("wake", "", None, None))
        self._thread.join(timeout=10)

    def _run(self) -> None:
        engine = self.engine
        while not self._stop.is_set():
            block = not engine.has_unfinished()
            try:
                while True:
                    cmd, request_id, prompt_ids, params = self._commands.get(block=block, timeout=0.5)
                    block = False
                    if cmd == "add":
                        try:
                            engine.add_request(prompt_ids, params, request_id=request_id)
                        except ValueError as e:
                            self._fail([request_id], f"the engine refused the request: {e}")
                            continue
                        self.metrics.prompt_tokens.inc(len(prompt_ids))
                    elif cmd == "abort" and engine.abort(request_id):
                        self._sinks.pop(request_id, None)
                        self.metrics.request_success.labels(finished_reason="abort").inc()
            except queue.Empty:
                pass
            if self._stop.is_set() or not engine.has_unfinished():
                continue
            try:
                outs = engine.step()
            except Exception as e:                  # a bug must fail its requests, not hang every client
                self._fail(list(self._sinks), f"the engine failed: {type(e).__name__}: {e}")
                continue
            for out in outs:
                self._deliver(out)
            stats = engine.stats()
            self.metrics.set_load(stats["running"], stats["waiting"], stats["kv_usage"])

    def _fail(self, request_ids: list[str], message: str) -> None:
        """End these requests with finish_reason "error" (their blocks freed); the server answers 500."""
        for request_id in request_ids:
            self.engine.abort(request_id)
            target = self._sinks.pop(request_id, None)
            if target is not None:
                out = RequestOutput(request_id, [], [], [], "", message, True, "error")
                target[0].call_soon_threadsafe(target[1].put_nowait, out)

    def _deliver(self, out: RequestOutput) -> None:
        self.metrics.generation_tokens.inc(len(out.new_token_ids))
        if out.finished:
            ttft = None if out.first_token_time is None else out.first_token_time - out.arrival_time
            self.metrics.observe_finished(out.finish_reason, ttft, out.finish_time - out.arrival_time,
                                          len(out.token_ids))
        target = self._sinks.pop(out.request_id, None) if out.finished else self._sinks.get(out.request_id)
        if target is not None:
            loop, sink = target
            loop.call_soon_threadsafe(sink.put_nowait, out)


# ----------------------------------------------------------------------------- request bodies

class _Body(BaseModel):
    model_config = ConfigDict(extra="allow", strict=False)
    model: str
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    n: int = 1
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: dict | None = None


class CompletionBody(_Body):
    prompt: str | list[str]


class ChatBody(_Body):
    messages: list[dict]
    max_completion_tokens: int | None = None


async def _parse(request: Request, schema: type[_Body]) -> _Body:
    raw = await request.body()
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise APIError(400, f"the request body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise APIError(400, "the request body must be a JSON object")
    try:
        return schema.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        param = ".".join(str(x) for x in err["loc"]) or None
        raise APIError(400, f"{param}: {err['msg']}", param=param) from None


def _admit(engine: Engine, body: _Body, prompt: str, chat: bool) -> tuple[list[int], SamplingParams]:
    """Check a request against the model and the context; return its prompt ids and sampling parameters."""
    if body.model != MODEL_NAME:
        raise APIError(404, f"The model '{body.model}' does not exist; this server serves '{MODEL_NAME}'",
                       param="model", code="model_not_found")
    if body.n != 1:
        raise APIError(400, f"n must be 1 on this server, got {body.n}", param="n")
    ids = engine.tokenizer.encode(prompt)
    context = engine.model.cfg.max_seq_len
    if not ids:
        raise APIError(400, "the prompt is empty: the model needs at least one token", param="prompt")
    if len(ids) >= context:
        raise APIError(400, f"This model's maximum context length is {context} tokens; the prompt has "
                       f"{len(ids)} tokens, leaving no room to generate", param="prompt",
                       code="context_length_exceeded")
    max_tokens = body.max_tokens
    if chat and getattr(body, "max_completion_tokens", None) is not None:
        max_tokens = body.max_completion_tokens
    if max_tokens is None:
        max_tokens = context - len(ids) if chat else 16          # the OpenAI defaults (vLLM's for chat)
    if isinstance(max_tokens, int) and max_tokens >= 1 and len(ids) + max_tokens > context:
        raise APIError(400, f"This model's maximum context length is {context} tokens; you asked for "
                       f"{len(ids)} prompt + {max_tokens} completion tokens", param="max_tokens",
                       code="context_length_exceeded")
    cache = engine.cache
    if isinstance(max_tokens, int) and max_tokens >= 1 and \
            -(-(len(ids) + max_tokens) // cache.block_size) > cache.allocator.num_blocks:
        raise APIError(400, f"{len(ids)} prompt + {max_tokens} completion tokens need more KV blocks than the "
                       f"server's pool of {cache.allocator.num_blocks} x {cache.block_size} tokens holds",
                       param="max_tokens", code="context_length_exceeded")
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if chat and "\n" not in stop:
        stop.append("\n")                                        # the chat template's end of turn
    try:
        params = SamplingParams(temperature=body.temperature, top_p=body.top_p, top_k=body.top_k,
                                max_tokens=max_tokens, stop=tuple(stop), seed=body.seed)
    except ValueError as e:
        param = str(e).split(" ", 1)[0]
        raise APIError(400, str(e), param=param) from None
    return ids, params


# ----------------------------------------------------------------------------- the app

def create_app(engine: Engine) -> FastAPI:
    """The FastAPI app serving `engine` as MODEL_NAME; its engine thread starts with the app."""
    metrics = EngineMetrics()
    created = int(time.time())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.loop = EngineLoop(engine, metrics)
        yield
        app.state.loop.stop()

    app = FastAPI(title="llminfra_lab engine", version="1", lifespan=lifespan)
    app.state.engine, app.state.metrics, app.state.loop = engine, metrics, None

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        metrics.request_errors.labels(status=str(exc.status)).inc()
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        metrics.request_errors.labels(status=str(exc.status_code)).inc()
        return APIError(exc.status_code, str(exc.detail), kind="invalid_request_error").response()

    @app.get("/health")
    async def health():
        return Response(status_code=200)

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": MODEL_NAME, "object": "model", "created": created,
                                            "owned_by": "llminfra_lab",
                                            "max_model_len": engine.model.cfg.max_seq_len}]}

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await _parse(request, CompletionBody)
        prompt = body.prompt
        if isinstance(prompt, list):
            if len(prompt) != 1:
                raise APIError(400, "prompt must be one string (batches of prompts are not served)", param="prompt")
            prompt = prompt[0]
        ids, params = _admit(engine, body, prompt, chat=False)
        return await _respond(app, body, ids, params, chat=False)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await _parse(request, ChatBody)
        try:
            prompt = apply_chat_template(body.messages)
        except ValueError as e:
            raise APIError(400, str(e), param="messages") from None
        ids, params = _admit(engine, body, prompt, chat=True)
        return await _respond(app, body, ids, params, chat=True)

    return app


def _usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _choice(chat: bool, text: str, finish: str | None, stream: bool, first: bool = False) -> dict:
    if not chat:
        return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
    if stream:
        delta = {"role": "assistant", "content": text} if first else ({"content": text} if text else {})
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": finish}


async def _respond(app: FastAPI, body: _Body, ids: list[int], params: SamplingParams, chat: bool):
    loop: EngineLoop = app.state.loop
    request_id, sink = loop.submit(ids, params)
    obj = "chat.completion" if chat else "text_completion"
    head = {"id": ("chat" if chat else "") + request_id, "created": int(time.time()), "model": MODEL_NAME}
    if not body.stream:
        out = None
        try:
            while out is None or not out.finished:
                out = await sink.get()
        finally:
            if out is None or not out.finished:
                loop.abort(request_id)
        if out.finish_reason == "error":
            raise APIError(500, out.new_text, kind="server_error")
        return {**head, "object": obj, "choices": [_choice(chat, out.text, out.finish_reason, False)],
                "usage": _usage(len(ids), len(out.token_ids))}

    include_usage = bool((body.stream_options or {}).get("include_usage"))
    chunk_obj = "chat.completion.chunk" if chat else "text_completion"

    async def events():
        finished, first = False, True
        try:
            while not finished:
                out: RequestOutput = await sink.get()
                finished = out.finished
                if out.finish_reason == "error":           # headers are sent: report it in the stream
                    yield {"data": json.dumps({"error": {"message": out.new_text, "type": "server_error",
                                                         "param": None, "code": None}})}
                    return
                if out.new_text or finished or (chat and first):
                    choice = _choice(chat, out.new_text, out.finish_reason if finished else None, True, first)
                    first = False
                    chunk = {**head, "object": chunk_obj, "choices": [choice]}
                    if include_usage:
                        chunk["usage"] = None
                    yield {"data": json.dumps(chunk)}
            if include_usage:
                yield {"data": json.dumps({**head, "object": chunk_obj, "choices": [],
                                           "usage": _usage(len(ids), len(out.token_ids))})}
            yield {"data": "[DONE]"}
        finally:
            if not finished:                       # the client went away: free its KV blocks
                loop.abort(request_id)

    return EventSourceResponse(events(), ping=15)


# ----------------------------------------------------------------------------- running it

def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port the OS says is free on host now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class ServerHandle:
    """A server running in a background thread: `url`, `app`, and `stop()`."""
    server: uvicorn.Server
    thread: threading.Thread
    app: FastAPI
    url: str

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def start_server(engine: Engine, port: int | None = None, host: str = "127.0.0.1",
                 startup_timeout_s: float = 30.0) -> ServerHandle:
    """Serve `engine` with uvicorn in a daemon thread on host:port (a free port when None); wait until up."""
    if host not in ("127.0.0.1", "localhost", "::1", "0.0.0.0"):
        raise ValueError(f"host must be a local address, got {host!r}")
    port = free_port(host) if port is None else port
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"port must be an int in [1, 65535], got {port!r}")
    app = create_app(engine)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.02)
    return ServerHandle(server, thread, app, f"http://{host}:{port}")


def main(argv: list[str] | None = None) -> None:
    """The documented command: parse the flags, load the shipped target GPT, serve until interrupted."""
    ap = argparse.ArgumentParser(description="Serve the tiny GPT with an OpenAI-compatible API.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--policy", default="continuous", choices=["continuous", "static"])
    ap.add_argument("--max-num-seqs", type=int, default=8)
    ap.add_argument("--num-blocks", type=int, default=256)
    ap.add_argument("--block-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    engine = engine_from_args(policy=args.policy, max_num_seqs=args.max_num_seqs, num_blocks=args.num_blocks,
                              block_size=args.block_size, seed=args.seed)
    uvicorn.run(create_app(engine), host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
