"""Benchmark: the send/recv ring collectives of llminfra_lab.collectives against the
backend's own collectives (torch.distributed with gloo), on local processes.

For each collective and size it prints both times, their ratio (ours / torch) and the
nccl-tests bus bandwidth of each, then the alpha and beta fitted to each. A ratio near 1
means the Python ring costs little over gloo's C++ implementation. Timings vary with the
machine's load, so nothing here asserts.

    .venv/bin/python benchmarks/bench_collectives.py [world_size]
"""
from __future__ import annotations

import sys

from llminfra_lab import collectives as C

SIZES = [16 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20]


def main(world_size: int = 2, repeats: int = 5) -> None:
    for collective in ("all_reduce", "reduce_scatter", "all_gather"):
        ours = C.measure_collective(world_size, SIZES, repeats, collective, impl="ring")
        ref = C.measure_collective(world_size, SIZES, repeats, collective, impl="torch")
        print(f"\n{collective} on {world_size} gloo processes")
        print(f"{'bytes':>12s} {'ring ms':>9s} {'torch ms':>9s} {'ratio':>6s} {'ring busbw':>11s} {'torch busbw':>12s}")
        for size, t_ours, t_ref in zip(SIZES, ours.seconds, ref.seconds):
            bw = [C.bus_bandwidth(C.algorithm_bandwidth(size, t), collective, world_size) / 1e9
                  for t in (t_ours, t_ref)]
            print(f"{size:12,d} {t_ours * 1e3:9.3f} {t_ref * 1e3:9.3f} {t_ours / t_ref:6.2f} "
                  f"{bw[0]:8.2f} GB/s {bw[1]:8.2f} GB/s")
        for name, m in (("ring", ours), ("torch", ref)):
            fit = C.fit_alpha_beta(m.sizes_bytes, m.seconds, world_size, collective)
            print(f"  {name:5s} fit: alpha {fit.alpha_s * 1e6:9.1f} us, 1/beta {fit.bandwidth_Bps / 1e9:7.2f} GB/s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
