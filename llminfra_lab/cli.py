"""`llminfra-lab`: the book's calculators on the command line.

Every number comes from the chapter's own function, so there is nothing to keep in sync:

    kv-cache      KV-cache bytes of a catalog model (memory.kv_cache_bytes_per_token,
                  inference.kv_cache_bytes; chapter 11)
    train-memory  training memory per GPU for a ZeRO stage and a TP x PP x DP layout
                  (parallel.layout_memory_bytes over memory.model_state_bytes; chapters 6-7)
    roofline      a GEMM's FLOPs, bytes, intensity and verdict on an accelerator (roofline; chapter 2)
    train-cost    GPU-hours and dollars to train (economics.estimate_training; chapter 1)
    serve-cost    decode/prefill throughput and dollars per million tokens (economics.estimate_serving)
    plan          the layouts that fit, fastest first (parallel.plan_layouts; chapter 6)

`--json` prints the numbers as JSON; bad input exits with status 2 and one line on stderr.
This module sits above every chapter: it may import any of them, and none imports it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from llminfra_lab import catalog, hardware, memory, precision
from llminfra_lab.checks import nonnegative_int, positive_int
from llminfra_lab.economics import estimate_serving, estimate_training
from llminfra_lab.inference import kv_cache_bytes
from llminfra_lab.parallel import layout_memory_bytes, plan_layouts
from llminfra_lab.roofline import gemm_cost, is_memory_bound, roofline_time_s

__all__ = ["main", "build_parser"]

PROG = "llminfra-lab"
MODELS_HELP = "a catalog model, one of: " + ", ".join(sorted(catalog.MODELS))
GPUS_HELP = "an accelerator, one of: " + ", ".join(hardware.accelerator_names()) + " (case-insensitive; aliases such as h100)"
DTYPES_HELP = "one of: " + ", ".join(precision.BYTES_PER_ELEMENT)


class _UsageError(Exception):
    """Bad command-line input: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):       # argparse prints usage plus the error; the CLI promises one line
        raise _UsageError(f"{self.prog}: error: {message}")


# ------------------------------------------------------------------------------------------------
# The subcommands: each returns (a dict of results for --json, the human-readable text)
# ------------------------------------------------------------------------------------------------

def _spec(name: str) -> catalog.ModelSpec:
    return catalog.model_spec(name)


def _gb(x: float) -> str:
    return f"{x / 1e9:,.2f} GB"


def _table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _kv_cache(a) -> tuple[dict, str]:
    spec = _spec(a.model)
    nonnegative_int("context", a.context)
    positive_int("batch", a.batch)
    per_token = memory.kv_cache_bytes_per_token(spec, a.dtype)
    per_request = kv_cache_bytes(spec, a.context, a.dtype)
    out = {"model": spec.name, "context": a.context, "batch": a.batch, "dtype": a.dtype,
           "bytes_per_token": per_token, "bytes_per_request": per_request, "bytes_total": a.batch * per_request}
    return out, _table([("model", spec.name), ("context x batch", f"{a.context:,} tokens x {a.batch}"),
                        ("dtype", a.dtype), ("per token", f"{per_token / 1024:,.1f} KiB ({per_token:,.0f} B)"),
                        ("per request", _gb(per_request)), ("total", _gb(out["bytes_total"]))])


def _train_memory(a) -> tuple[dict, str]:
    spec = _spec(a.model)
    parts = layout_memory_bytes(spec.total_params(), spec.n_layers, spec.d_model, tp=a.tp, pp=a.pp, dp=a.dp,
                                seq_len=a.seq_len, micro_batch=a.micro_batch, microbatches=a.microbatches,
                                n_heads=spec.n_heads, zero_stage=a.zero_stage, recompute=a.recompute)
    total = sum(parts.values())
    out = {"model": spec.name, "zero_stage": a.zero_stage, "tp": a.tp, "pp": a.pp, "dp": a.dp,
           "seq_len": a.seq_len, "micro_batch": a.micro_batch, "microbatches": a.microbatches,
           "recompute": a.recompute, "bytes": {**parts, "total": total}}
    rows = [("model", spec.name), ("layout", f"TP {a.tp} x PP {a.pp} x DP {a.dp}, ZeRO stage {a.zero_stage}")]
    rows += [(k, _gb(v)) for k, v in parts.items()] + [("total per GPU", _gb(total))]
    if a.gpu:
        acc = hardware.accelerator(a.gpu)
        out["gpu"], out["hbm_bytes"], out["fits"] = acc.name, acc.hbm_gb * 1e9, total <= acc.hbm_gb * 1e9
        rows.append((f"fits {acc.name} ({acc.hbm_gb:g} GB)", "yes" if out["fits"] else "no"))
    return out, _table(rows)


def _roofline(a) -> tuple[dict, str]:
    kernel = gemm_cost(a.m, a.k, a.n, a.dtype)
    acc = hardware.accelerator(a.gpu)
    ridge = acc.ridge_point(a.dtype)
    verdict = "memory-bound" if is_memory_bound(kernel, acc.name) else "compute-bound"
    out = {"m": a.m, "n": a.n, "k": a.k, "dtype": a.dtype, "gpu": acc.name, "flops": kernel.flops,
           "bytes": kernel.bytes, "intensity": kernel.intensity, "ridge_point": ridge,
           "time_s": roofline_time_s(kernel, acc.name), "verdict": verdict}
    return out, _table([("GEMM (m x k x n)", f"{a.m} x {a.k} x {a.n}, {a.dtype}"), ("accelerator", acc.name),
                        ("FLOPs", f"{kernel.flops:.3e}"), ("HBM bytes", f"{kernel.bytes:.3e}"),
                        ("intensity", f"{kernel.intensity:,.1f} FLOP/B"), ("ridge point", f"{ridge:,.1f} FLOP/B"),
                        ("roofline time", f"{out['time_s'] * 1e6:,.2f} us"), ("verdict", verdict)])


def _train_cost(a) -> tuple[dict, str]:
    est = estimate_training(a.model, a.tokens, a.gpu, precision=a.precision, mfu=a.mfu,
                            usd_per_gpu_hour=a.usd_per_gpu_hour)
    out = dataclasses.asdict(est)
    rows = [("model", est.model), ("tokens", f"{est.n_tokens:.3g}"), ("active parameters", f"{est.n_params_active:.3g}"),
            ("FLOPs (6ND)", f"{est.total_flops:.3e}"), ("accelerator", f"{est.accelerator} {est.precision}, MFU {est.mfu:g}"),
            ("GPU-hours", f"{est.gpu_hours:,.0f}"), ("cost", f"${est.cost_usd:,.0f} at ${est.usd_per_gpu_hour:g}/GPU-hour")]
    if a.n_gpus is not None:
        out["n_gpus"], out["days"] = a.n_gpus, est.days_on(a.n_gpus)
        rows.append((f"days on {a.n_gpus} GPUs", f"{out['days']:,.1f}"))
    return out, _table(rows)


def _serve_cost(a) -> tuple[dict, str]:
    positive_int("batch", a.batch)
    est = estimate_serving(a.model, a.gpu, n_gpus=a.n_gpus, batch_size=a.batch, precision=a.precision,
                           usd_per_gpu_hour=a.usd_per_gpu_hour, prefill_mfu=a.prefill_mfu)
    return dataclasses.asdict(est), _table([
        ("model", est.model), ("replica", f"{est.n_gpus} x {est.accelerator}, batch {est.batch_size}"),
        ("weights", _gb(est.weight_bytes)),
        ("decode", f"{est.decode_tokens_per_s:,.0f} tokens/s ({est.decode_bound}-bound)"),
        ("prefill", f"{est.prefill_tokens_per_s:,.0f} tokens/s"),
        ("$ / M output tokens", f"{est.usd_per_million_output:,.3f}"),
        ("$ / M input tokens", f"{est.usd_per_million_input:,.3f}")])


def _plan(a) -> tuple[dict, str]:
    positive_int("top", a.top)
    layouts = plan_layouts(a.model, a.gpu, a.n_gpus, gpus_per_node=a.gpus_per_node, seq_len=a.seq_len,
                           global_batch=a.global_batch, micro_batch=a.micro_batch, zero_stage=a.zero_stage,
                           recompute=a.recompute, mfu=a.mfu)
    rows = [{**dataclasses.asdict(L), "memory_bytes": L.memory_bytes} for L in layouts]
    out = {"model": _spec(a.model).name, "gpu": hardware.accelerator(a.gpu).name, "n_gpus": a.n_gpus,
           "n_layouts": len(layouts), "layouts": rows[: a.top]}
    if not layouts:
        return out, f"no layout of {out['model']} fits on {a.n_gpus} x {out['gpu']}"
    head = f"{'TP':>3} {'PP':>3} {'DP':>4} {'m':>5} {'GB/GPU':>8} {'bubble':>7} {'step s':>8}"
    lines = [f"{len(layouts)} layouts fit; the {min(a.top, len(layouts))} fastest:", head]
    lines += [f"{L.tp:>3} {L.pp:>3} {L.dp:>4} {L.microbatches:>5} {L.memory_bytes / 1e9:>8.1f} "
              f"{L.bubble_fraction:>7.3f} {L.step_time_s:>8.2f}" for L in layouts[: a.top]]
    return out, "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# The parser
# ------------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="The calculators of 'LLM Infrastructure: An Engineer's Interactive "
                     "Textbook', taken from the llminfra_lab package.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, func, help_):
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("--json", action="store_true", help="print the results as JSON")
        p.set_defaults(func=func)
        return p

    def model(p):
        p.add_argument("model", metavar="MODEL", help=MODELS_HELP)

    def gpu(p, default="H100-SXM", flag="--gpu"):
        p.add_argument(flag, default=default, metavar="GPU", help=f"{GPUS_HELP}; default {default}")

    p = command("kv-cache", _kv_cache, "KV-cache bytes of a catalog model for a context length and batch.")
    model(p)
    p.add_argument("--context", type=int, default=4096, help="tokens per request (prompt + output), default 4096")
    p.add_argument("--batch", type=int, default=1, help="concurrent requests, default 1")
    p.add_argument("--dtype", default="bf16", help=f"KV-cache element type, {DTYPES_HELP}; default bf16")

    p = command("train-memory", _train_memory,
                "Training memory per GPU (mixed-precision Adam) for a ZeRO stage and a TP x PP x DP layout.")
    model(p)
    p.add_argument("--zero-stage", type=int, default=1, help=f"one of {memory.ZERO_STAGES} (0 = DDP), default 1")
    for flag in ("tp", "pp", "dp"):
        p.add_argument(f"--{flag}", type=int, default=1, help=f"{flag.upper()} degree, default 1")
    p.add_argument("--seq-len", type=int, default=4096, help="tokens per sequence, default 4096")
    p.add_argument("--micro-batch", type=int, default=1, help="sequences per micro-batch, default 1")
    p.add_argument("--microbatches", type=int, default=8, help="micro-batches per step (1F1B keeps min(pp, m)), default 8")
    p.add_argument("--recompute", default="selective", help=f"one of {memory.RECOMPUTE}, default selective")
    gpu(p, default=None)

    p = command("roofline", _roofline, "Roofline verdict for a GEMM C[m, n] = A[m, k] @ B[k, n] on an accelerator.")
    for dim in ("m", "n", "k"):
        p.add_argument(dim, type=int, help=f"GEMM size {dim}")
    p.add_argument("--dtype", default="bf16", help=f"element type, {DTYPES_HELP}; default bf16")
    gpu(p)

    p = command("train-cost", _train_cost, "Training compute (6ND), GPU-hours and rental cost of a catalog model.")
    model(p)
    p.add_argument("--tokens", type=float, required=True, help="training tokens, e.g. 15e12")
    gpu(p)
    p.add_argument("--precision", default="bf16", help="dense FLOP/s precision of the accelerator, default bf16")
    p.add_argument("--mfu", type=float, default=0.4, help="model FLOPs utilization in (0, 1], default 0.4")
    p.add_argument("--usd-per-gpu-hour", type=float, default=2.0, help="rental price, default 2.0")
    p.add_argument("--n-gpus", type=int, default=None, help="also print the wall-clock days on this many GPUs")

    p = command("serve-cost", _serve_cost, "Best-case decode/prefill throughput and $ per million tokens of one replica.")
    model(p)
    gpu(p)
    p.add_argument("--n-gpus", type=int, default=1, help="GPUs in the replica, default 1")
    p.add_argument("--batch", type=int, default=1, help="decode batch size, default 1")
    p.add_argument("--precision", default="bf16", help="weight and compute precision, default bf16")
    p.add_argument("--usd-per-gpu-hour", type=float, default=2.0, help="rental price, default 2.0")
    p.add_argument("--prefill-mfu", type=float, default=0.5, help="prefill MFU in (0, 1], default 0.5")

    p = command("plan", _plan, "Parallel layouts (TP, PP, DP) of a catalog model that fit, fastest first.")
    model(p)
    gpu(p)
    p.add_argument("--n-gpus", type=int, required=True, help="GPUs in the job")
    p.add_argument("--gpus-per-node", type=int, default=8, help="GPUs per NVLink domain, default 8")
    p.add_argument("--seq-len", type=int, default=4096, help="tokens per sequence, default 4096")
    p.add_argument("--global-batch", type=int, default=1024, help="sequences per step, default 1024")
    p.add_argument("--micro-batch", type=int, default=1, help="sequences per micro-batch, default 1")
    p.add_argument("--zero-stage", type=int, default=1, help=f"one of {memory.ZERO_STAGES}, default 1")
    p.add_argument("--recompute", default="selective", help=f"one of {memory.RECOMPUTE}, default selective")
    p.add_argument("--mfu", type=float, default=0.5, help="MFU for the step-time model, default 0.5")
    p.add_argument("--top", type=int, default=5, help="layouts to print, default 5")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0, or 2 on bad input with one line on stderr)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        result, text = args.func(args)
    except SystemExit as e:                 # --help (status 0)
        return e.code if isinstance(e.code, int) else 0
    except _UsageError as e:
        print(str(e), file=sys.stderr)
        return 2
    except (ValueError, KeyError) as e:     # the package's checks: unknown names, sizes out of range
        message = e.args[0] if e.args else repr(e)
        print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
