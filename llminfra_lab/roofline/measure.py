"""Measuring the reader's own roofline: a matmul for the compute roof, STREAM for the memory roof.

STREAM (McCalpin 1995) times four kernels on arrays much larger than any cache and
reports bytes moved per second, counting each array read or written once:

    copy   c = a          2 arrays        scale  b = s c        2 arrays
    add    c = a + b      3 arrays        triad  a = b + s c    3 arrays

Timings on a shared or laptop machine are noisy: other processes, frequency scaling,
the first touch of freshly allocated pages, and arrays that still fit in the last-level
cache all move single runs by large factors. So every kernel here runs once untimed
(warm-up: pages touched, thread pool started), then `repeats` times, and the MEDIAN of
those runs is reported, which one slow or one cache-lucky run cannot drag.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from llminfra_lab.roofline.cost import _check_positive, _check_sizes, gemm_cost

__all__ = ["STREAM_ARRAYS", "MachineMeasurement", "measure_cpu", "measure_gpu", "measure_machine"]

#: Arrays each STREAM kernel reads plus writes (fp32), as McCalpin counts them (no write-allocate).
STREAM_ARRAYS: dict[str, int] = {"copy": 2, "scale": 2, "add": 3, "triad": 3}


@dataclass(frozen=True)
class MachineMeasurement:
    """Measured fp32 matmul throughput and STREAM bandwidths of one device (medians of repeats)."""

    device: str                               # "cpu" or "cuda:0 (<name>)"
    matmul_n: int                             # square matmul size used
    matmul_flops_per_s: float                 # median of `repeats` runs
    stream_elements: int                      # fp32 elements per STREAM array
    stream_bytes_per_s: dict[str, float] = field(default_factory=dict)  # copy, scale, add, triad

    def __post_init__(self) -> None:
        _check_sizes(matmul_n=self.matmul_n, stream_elements=self.stream_elements)
        _check_positive(matmul_flops_per_s=self.matmul_flops_per_s)
        missing = set(STREAM_ARRAYS) - set(self.stream_bytes_per_s)
        if missing:
            raise ValueError(f"stream_bytes_per_s needs the keys {sorted(STREAM_ARRAYS)}; missing {sorted(missing)}")
        _check_positive(**{f"stream_bytes_per_s[{k!r}]": v for k, v in self.stream_bytes_per_s.items()})

    @property
    def bandwidth_bytes_per_s(self) -> float:
        """The bandwidth used for the roofline: STREAM triad."""
        return self.stream_bytes_per_s["triad"]

    @property
    def ridge_point(self) -> float:
        """Measured ridge point, FLOP/byte (fp32)."""
        return self.matmul_flops_per_s / self.bandwidth_bytes_per_s

    @property
    def matmul_intensity(self) -> float:
        """Arithmetic intensity of the measured matmul (fp32, A, B read and C written once)."""
        return gemm_cost(self.matmul_n, self.matmul_n, self.matmul_n, "fp32").intensity

    @property
    def stream_spread(self) -> float:
        """Fastest over slowest of the four STREAM bandwidths: near 1 on a quiet machine."""
        values = list(self.stream_bytes_per_s.values())
        return max(values) / min(values)


def measure_cpu(matmul_n: int = 768, stream_elements: int = 1 << 25, repeats: int = 7,
                threads: int | None = None) -> MachineMeasurement:
    """Measure this CPU: fp32 torch.matmul FLOP/s and STREAM copy/scale/add/triad bytes/s.

    One warm-up run, then the median of `repeats` runs of each kernel. The default
    arrays hold 2^25 fp32 values (134 MB each), far larger than a last-level cache, so
    the figure is DRAM bandwidth and not cache bandwidth; the whole call takes a couple
    of seconds. `threads` sets torch's intra-op thread count for the measurement only
    (None keeps the current setting).
    """
    import torch

    _check_sizes(matmul_n=matmul_n, stream_elements=stream_elements, repeats=repeats)
    if threads is not None:
        _check_sizes(threads=threads)
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return measure_cpu(matmul_n, stream_elements, repeats, None)
        finally:
            torch.set_num_threads(previous)

    def timed(fn: Callable[[], object]) -> float:
        fn()  # warm-up: first touch of pages, thread pool start
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t0)
        return max(statistics.median(runs), 1e-9)

    g = torch.Generator().manual_seed(0)
    a = torch.randn(matmul_n, matmul_n, generator=g)
    b = torch.randn(matmul_n, matmul_n, generator=g)
    c = torch.empty(matmul_n, matmul_n)
    flops = 2.0 * matmul_n ** 3 / timed(lambda: torch.matmul(a, b, out=c))
    bw = _stream(torch, stream_elements, "cpu", timed)
    return MachineMeasurement("cpu", matmul_n, flops, stream_elements, bw)


def measure_gpu(matmul_n: int = 4096, stream_elements: int = 1 << 26, repeats: int = 7,
                device: str = "cuda") -> MachineMeasurement:
    """The same measurement on a CUDA GPU, timed with CUDA events (fp32 matmul: TF32 disabled).

    Raises RuntimeError when no CUDA device is available.
    """
    import torch

    _check_sizes(matmul_n=matmul_n, stream_elements=stream_elements, repeats=repeats)
    if not torch.cuda.is_available():
        raise RuntimeError("measure_gpu needs a CUDA device; torch.cuda.is_available() is False")
    dev = torch.device(device)
    if dev.type != "cuda":
        raise ValueError(f"device must be a CUDA device such as 'cuda' or 'cuda:0', got {device!r}")

    def timed(fn: Callable[[], object]) -> float:
        fn()
        torch.cuda.synchronize(dev)
        runs = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(dev)
            runs.append(start.elapsed_time(end) / 1e3)
        return max(statistics.median(runs), 1e-9)

    old_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        g = torch.Generator(device=dev).manual_seed(0)
        a = torch.randn(matmul_n, matmul_n, generator=g, device=dev)
        b = torch.randn(matmul_n, matmul_n, generator=g, device=dev)
        c = torch.empty(matmul_n, matmul_n, device=dev)
        t_mm = timed(lambda: torch.matmul(a, b, out=c))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old_tf32
    bw = _stream(torch, stream_elements, dev, timed)
    idx = dev.index if dev.index is not None else torch.cuda.current_device()
    return MachineMeasurement(f"cuda:{idx} ({torch.cuda.get_device_name(idx)})", matmul_n,
                              2.0 * matmul_n ** 3 / t_mm, stream_elements, bw)


def measure_machine(small: bool = False) -> list[MachineMeasurement]:
    """The CPU, and the GPU when torch sees one. `small` uses tiny sizes (for tests and smoke runs)."""
    import torch

    if not isinstance(small, bool):
        raise ValueError(f"small must be True or False, got {small!r}")
    out = [measure_cpu(64, 100_000, 1) if small else measure_cpu()]
    if torch.cuda.is_available():
        out.append(measure_gpu(256, 1_000_000, 2) if small else measure_gpu())
    return out


def _stream(torch, n: int, device, timed) -> dict[str, float]:
    """STREAM's four kernels on fp32 arrays of n elements, bytes/s each (filled arrays: pages touched)."""
    a = torch.full((n,), 1.0, device=device)
    b = torch.full((n,), 2.0, device=device)
    c = torch.full((n,), 0.0, device=device)
    s = 3.0
    kernels = {
        "copy": lambda: c.copy_(a),
        "scale": lambda: torch.mul(c, s, out=b),
        "add": lambda: torch.add(a, b, out=c),
        "triad": lambda: torch.add(b, c, alpha=s, out=a),
    }
    return {name: STREAM_ARRAYS[name] * 4 * n / timed(fn) for name, fn in kernels.items()}
