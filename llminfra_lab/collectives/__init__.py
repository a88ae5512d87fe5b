"""Collective communication: ring all-reduce from send/recv, its cost model, and the fabric under it.

Read in this order (one file per topic):

1. `ring.py`: `ring_schedule` says which chunk each rank sends and receives at each step
   of a ring all-reduce; `ring_reduce_scatter`, `ring_all_gather` and `ring_all_reduce`
   run that schedule with nothing but point-to-point `isend`/`irecv`, for any tensor
   size (chunks may be uneven or empty); `ring_vs_torch` runs them beside
   `dist.all_reduce`. `launch` (from the spine's `llminfra_lab.launch`) starts the
   process group of local processes they run in.
2. `cost.py`: `BUSBW_FACTORS`, the ring's byte count 2(n-1)/n (the one definition, used
   by later chapters too), nccl-tests' algorithm and bus bandwidth, and the alpha-beta
   model: sending n bytes costs alpha + n * beta seconds. From it `ring_all_reduce_time`,
   `tree_all_reduce_time` (NCCL's double binary tree) and `hierarchical_all_reduce_time`
   (inside the node, then across nodes), priced on `FABRICS` (NVLink, InfiniBand,
   RoCE): cited bandwidths, assumed latencies.
3. `measure.py`: `measure_collective` times a collective at several sizes on N local
   processes; `fit_alpha_beta` recovers alpha and beta by least squares.
4. `topology.py`: `fat_tree` sizes a k-ary fat-tree built from k-port switches.
5. `plots.py`: the ring step by step (`plot_ring_schematic`) and the chapter's figures.

Units: sizes in bytes, times in seconds, bandwidths in bytes/s per direction unless a
name says otherwise.
"""
from __future__ import annotations

from llminfra_lab.collectives.cost import (
    BUSBW_FACTORS,
    FABRICS,
    Fabric,
    algorithm_bandwidth,
    all_reduce_time,
    bus_bandwidth,
    bytes_sent_per_rank,
    fabric,
    fabric_table_markdown,
    hierarchical_all_reduce_time,
    ring_all_reduce_time,
    ring_reduce_scatter_time,
    scale_up_fabric,
    scale_up_table_markdown,
    tree_all_reduce_time,
)
from llminfra_lab.collectives.measure import (
    AlphaBeta,
    Measurement,
    fit_alpha_beta,
    measure_collective,
    ring_step_counts,
    time_collective_on_rank,
)
from llminfra_lab.collectives.plots import (
    plot_all_reduce_model,
    plot_fat_tree_scaling,
    plot_fit,
    plot_hierarchical,
    plot_ring_schematic,
)
from llminfra_lab.collectives.ring import (
    chunk_sizes,
    ring_all_gather,
    ring_all_reduce,
    ring_contributions,
    ring_reduce_scatter,
    ring_schedule,
    ring_vs_torch,
)
from llminfra_lab.collectives.topology import FatTree, fat_tree
from llminfra_lab.launch import launch

__all__ = [
    "launch",
    # the ring: its schedule, and the collectives built from point-to-point messages
    "ring_schedule", "ring_contributions", "chunk_sizes",
    "ring_reduce_scatter", "ring_all_gather", "ring_all_reduce", "ring_vs_torch",
    # bytes per rank, nccl-tests bandwidths, the alpha-beta model, fabrics
    "BUSBW_FACTORS", "bytes_sent_per_rank", "algorithm_bandwidth", "bus_bandwidth",
    "ring_all_reduce_time", "ring_reduce_scatter_time", "tree_all_reduce_time",
    "hierarchical_all_reduce_time", "all_reduce_time",
    "Fabric", "FABRICS", "fabric", "fabric_table_markdown", "scale_up_fabric", "scale_up_table_markdown",
    # measuring and fitting
    "Measurement", "AlphaBeta", "measure_collective", "fit_alpha_beta", "time_collective_on_rank",
    "ring_step_counts",
    # topology
    "FatTree", "fat_tree",
    # plots
    "plot_ring_schematic", "plot_all_reduce_model", "plot_fat_tree_scaling", "plot_fit", "plot_hierarchical",
]
