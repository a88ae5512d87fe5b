"""Benchmark: llminfra_lab.roofline's measured roofs against plain NumPy references.

Prints, for this machine, the fp32 matmul FLOP/s and STREAM triad bandwidth measured by
`roofline.measure_cpu` next to the same kernels written directly in NumPy, and their
ratios. Both sides are timed the same way: one warm-up run, then the median of the runs.
A ratio near 1 means the torch-based measurement is not leaving performance on the table;
it is not a test (timings vary with load), so nothing here asserts.

    .venv/bin/python benchmarks/bench_roofline.py
"""
from __future__ import annotations

import statistics
import time

import numpy as np

from llminfra_lab import roofline as rl


def median_time(fn, repeats: int = 7) -> float:
    fn()  # warm-up, as roofline.measure_cpu does
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main(matmul_n: int = 768, stream_elements: int = 1 << 25) -> None:
    m = rl.measure_cpu(matmul_n, stream_elements, repeats=7, threads=1)  # NumPy's elementwise ops are single-threaded

    rng = np.random.default_rng(0)
    a = rng.standard_normal((matmul_n, matmul_n), dtype=np.float32)
    b = rng.standard_normal((matmul_n, matmul_n), dtype=np.float32)
    c = np.empty_like(a)
    np_flops = 2.0 * matmul_n ** 3 / median_time(lambda: np.matmul(a, b, out=c))

    x = np.ones(stream_elements, dtype=np.float32)
    y = np.full(stream_elements, 2.0, dtype=np.float32)
    z = np.zeros(stream_elements, dtype=np.float32)

    def triad() -> None:  # x = y + 3 z, in two passes as NumPy must (temporary for 3 z)
        np.multiply(z, 3.0, out=x)
        np.add(x, y, out=x)

    # NumPy's two-pass triad moves 5 arrays' worth of bytes (read z, write x, read x and y, write x)
    np_triad = 5 * 4 * stream_elements / median_time(triad)

    print(f"fp32 matmul {matmul_n}^3 : roofline {m.matmul_flops_per_s / 1e9:8.1f} GFLOP/s | "
          f"numpy {np_flops / 1e9:8.1f} GFLOP/s | ratio {m.matmul_flops_per_s / np_flops:5.2f}")
    print(f"STREAM triad (fp32)  : roofline {m.bandwidth_bytes_per_s / 1e9:8.1f} GB/s     | "
          f"numpy {np_triad / 1e9:8.1f} GB/s     | ratio {m.bandwidth_bytes_per_s / np_triad:5.2f}")
    print(f"STREAM spread        : fastest / slowest kernel {m.stream_spread:.2f}")
    print(f"measured ridge point : {m.ridge_point:.2f} FLOP/byte")


if __name__ == "__main__":
    main()
