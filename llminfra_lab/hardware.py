"""Accelerator spec table: the datasheet numbers every other chapter reasons with.

One row per accelerator, with DENSE peak throughput per precision, HBM capacity and
bandwidth, scale-up interconnect bandwidth, board power and the bibliography key
(in `references.bib`) of the document each figure was read from.

Why "dense"? From the H100 on, NVIDIA datasheets print Tensor Core figures only
*with 2:4 structured sparsity*, marked with an asterisk ("Specifications 1/2 lower
without sparsity"); the A100 datasheet still printed both (e.g. BF16 312 | 624*).
Sparsity only helps a kernel whose weights were pruned to that pattern, which
ordinary LLM training and inference are not, so this table stores the dense figure:
half of each starred one. AMD's MI300X datasheet prints both; we store its dense column.

Rows whose figures do not come from the vendor's own datasheet say so in `notes`
("REPORTED" for press or secondary reports, "paper" for a vendor's research paper).

Units: `dense_tflops` in 1e12 FLOP/s (or 1e12 OP/s for int8), `hbm_gb` in 1e9
bytes, `hbm_tbps` in 1e12 bytes/s, `scaleup_gbps` in 1e9 bytes/s summed over all
links and both directions, `tdp_w` in watts (NaN where the vendor publishes none).

Used in chapter 2 (roofline) and by every chapter that turns FLOPs and bytes
into seconds (economics, inference, parallelism).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["PRECISIONS", "Accelerator", "ACCELERATORS", "accelerator", "accelerator_names"]

#: Precision keys a row may carry, widest first.
PRECISIONS: tuple[str, ...] = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8", "fp4")


@dataclass(frozen=True)
class Accelerator:
    """One accelerator's peak numbers (dense) and where they come from."""

    name: str                        # canonical key, e.g. "H100-SXM"
    vendor: str                      # "NVIDIA", "AMD", "Huawei"
    year: int                        # year of first volume availability
    dense_tflops: dict[str, float]   # DENSE TFLOP/s (TOP/s for int8) per precision key
    hbm_gb: float                    # HBM capacity, GB (1e9 bytes)
    hbm_tbps: float                  # HBM bandwidth, TB/s (1e12 bytes/s)
    scaleup_gbps: float              # NVLink / Infinity Fabric / HCCS / UB per chip, GB/s, total bidirectional
    tdp_w: float                     # board power, W (NaN where unpublished)
    source: str                      # citation key in references.bib
    notes: str = field(default="")   # sparse-vs-dense, reported-vs-datasheet remarks

    def __post_init__(self) -> None:
        unknown = set(self.dense_tflops) - set(PRECISIONS)
        if unknown:
            raise ValueError(f"{self.name}: unknown precision keys {sorted(unknown)}; expected among {PRECISIONS}")
        for key, value in self.dense_tflops.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{self.name}: dense_tflops[{key!r}] must be a positive finite number, got {value!r}")
        for attr in ("hbm_gb", "hbm_tbps", "scaleup_gbps"):
            value = getattr(self, attr)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{self.name}: {attr} must be a positive finite number, got {value!r}")
        if not (math.isnan(self.tdp_w) or self.tdp_w > 0):
            raise ValueError(f"{self.name}: tdp_w must be positive or NaN (unpublished), got {self.tdp_w!r}")

    @property
    def precisions(self) -> tuple[str, ...]:
        """The precision keys this row has figures for, widest first."""
        return tuple(p for p in PRECISIONS if p in self.dense_tflops)

    def peak_flops(self, precision: str) -> float:
        """Dense peak FLOP/s (not tera) at `precision`, e.g. 9.895e14 for H100-SXM bf16."""
        if precision not in self.dense_tflops:
            raise ValueError(
                f"{self.name} has no {precision!r} figure; expected one of {list(self.precisions)}"
            )
        return self.dense_tflops[precision] * 1e12

    @property
    def hbm_bytes_per_s(self) -> float:
        """HBM bandwidth in bytes/s."""
        return self.hbm_tbps * 1e12

    def ridge_point(self, precision: str = "bf16") -> float:
        """Roofline ridge point, FLOP/byte: dense peak FLOP/s divided by HBM bytes/s.

        A kernel whose arithmetic intensity is below this number is memory-bound on
        this chip; above it, compute-bound (Williams et al. 2009).
        """
        return self.peak_flops(precision) / self.hbm_bytes_per_s


_NVIDIA_SPARSE_NOTE = (
    "NVIDIA's datasheet prints Tensor Core figures only with 2:4 sparsity (asterisked); "
    "dense = half of each starred figure, stored here. "
)

ACCELERATORS: dict[str, Accelerator] = {
    a.name: a
    for a in [
        Accelerator(
            name="A100-SXM-80GB", vendor="NVIDIA", year=2020,
            dense_tflops={"fp64": 19.5, "fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0, "int8": 624.0},
            hbm_gb=80.0, hbm_tbps=2.039, scaleup_gbps=600.0, tdp_w=400.0, source="nvidia2020a100",
            notes="The A100 datasheet prints Tensor Core figures both dense and with 2:4 sparsity "
            "(bf16 312 | 624*); the dense column is stored. fp64 is the FP64 Tensor Core figure (9.7 TFLOP/s without Tensor Cores). "
            "HBM2e; NVLink 3.",
        ),
        Accelerator(
            name="H100-SXM", vendor="NVIDIA", year=2022,
            dense_tflops={"fp64": 67.0, "fp32": 67.0, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5,
                          "fp8": 1979.0, "int8": 1979.0},
            hbm_gb=80.0, hbm_tbps=3.35, scaleup_gbps=900.0, tdp_w=700.0, source="nvidia2022h100",
            notes=_NVIDIA_SPARSE_NOTE + "Datasheet: bf16 1,979* and fp8 3,958* TFLOP/s. fp64 is the FP64 "
            "Tensor Core figure (34 TFLOP/s without). HBM3; NVLink 4; up to 700 W.",
        ),
        Accelerator(
            name="H800-SXM", vendor="NVIDIA", year=2023,
            dense_tflops={"fp32": 67.0, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5,
                          "fp8": 1979.0, "int8": 1979.0},
            hbm_gb=80.0, hbm_tbps=3.35, scaleup_gbps=400.0, tdp_w=700.0, source="zhao2025insights",
            notes="Export variant of the H100 SXM for China, from DeepSeek's ISCA '25 paper (a user's report, "
            "not an NVIDIA datasheet, which NVIDIA does not publish for the H800): Hopper like the H100, with "
            "NVLink cut from 900 to 400 GB/s and FP64 reduced (the paper gives no FP64 figure, so none is "
            "stored; a vendor blog's 1 TFLOP/s is unverified). Tensor Core peaks, HBM3 and power taken equal "
            "to the H100 SXM's, which the paper implies but does not tabulate. " + _NVIDIA_SPARSE_NOTE,
        ),
        Accelerator(
            name="H200-SXM", vendor="NVIDIA", year=2024,
            dense_tflops={"fp64": 67.0, "fp32": 67.0, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5,
                          "fp8": 1979.0, "int8": 1979.0},
            hbm_gb=141.0, hbm_tbps=4.8, scaleup_gbps=900.0, tdp_w=700.0, source="nvidia2024h200",
            notes=_NVIDIA_SPARSE_NOTE + "Same GH100 compute as the H100 SXM with 141 GB of HBM3e at 4.8 TB/s; "
            "up to 700 W.",
        ),
        Accelerator(
            name="B200", vendor="NVIDIA", year=2024,
            dense_tflops={"fp64": 37.0, "fp32": 75.0, "tf32": 1100.0, "bf16": 2250.0, "fp16": 2250.0,
                          "fp8": 4500.0, "int8": 4500.0, "fp4": 9000.0},
            hbm_gb=180.0, hbm_tbps=7.7, scaleup_gbps=1800.0, tdp_w=1000.0, source="nvidia2024hgxb200",
            notes=_NVIDIA_SPARSE_NOTE + "Per-GPU figures of the HGX B200 datasheet (configurable up to 1,000 W): "
            "fp4 18*, fp8 9*, bf16 4.5*, tf32 2.2* PFLOP/s. Two dies in one package; HBM3e; NVLink 5. "
            "Launch material quoted 192 GB and 8 TB/s; the HGX datasheet lists 180 GB and 7.7 TB/s.",
        ),
        Accelerator(
            name="B300", vendor="NVIDIA", year=2025,
            dense_tflops={"fp64": 1.25, "fp32": 75.0, "tf32": 1125.0, "bf16": 2250.0, "fp16": 2250.0,
                          "fp8": 4500.0, "fp4": 13125.0},
            hbm_gb=288.0, hbm_tbps=8.0, scaleup_gbps=1800.0, tdp_w=float("nan"), source="nvidia2025hgxb300",
            notes=_NVIDIA_SPARSE_NOTE + "Blackwell Ultra, per-GPU figures of the HGX B300 column of NVIDIA's HGX "
            "table (8 GPUs: bf16 36*, fp8 72*, fp4 144* | 105 dense PFLOP/s, fp64 10 TFLOP/s), divided by 8; "
            "read from secondary copies of that table (checked against nvidia.com when next revised). "
            "NVIDIA's Blackwell Ultra article (nvidia2025blackwellultra) gives 15 PFLOP/s dense NVFP4 for the "
            "GB300 part, 288 GB of HBM3e at 8 TB/s and NVLink 5 at 1.8 TB/s; FP64 and INT8 were cut against the "
            "B200. Board power not stored (the HGX table gives none per GPU).",
        ),
        Accelerator(
            name="MI300X", vendor="AMD", year=2023,
            dense_tflops={"fp64": 163.4, "fp32": 163.4, "tf32": 653.7, "bf16": 1307.4, "fp16": 1307.4,
                          "fp8": 2614.9, "int8": 2614.9},
            hbm_gb=192.0, hbm_tbps=5.3, scaleup_gbps=896.0, tdp_w=750.0, source="amd2023mi300x",
            notes="AMD's datasheet prints dense and sparse columns; dense stored (sparse fp16 is 2,614.9). "
            "fp64/fp32 are the matrix-core figures (vector fp64 81.7). 8 XCD chiplets, HBM3. Scale-up: in an "
            "8-GPU platform 7 Infinity Fabric links (128 GB/s peak each, as AMD lists them) join the peers, "
            "7 x 128 = 896 GB/s.",
        ),
        Accelerator(
            name="MI355X", vendor="AMD", year=2025,
            dense_tflops={"bf16": 2516.6, "fp16": 2516.6, "fp8": 5033.2, "fp4": 10066.3},
            hbm_gb=288.0, hbm_tbps=8.0, scaleup_gbps=7 * 153.6, tdp_w=1400.0, source="theregister2025mi355x",
            notes="REPORTED, not read from AMD's datasheet: 288 GB of HBM3E at 8 TB/s, 1.4 kW and about "
            "10 PFLOP/s of dense FP4 (double with sparsity) from the cited press report of AMD's June 2025 "
            "launch. Dense throughput computed from architecture figures AMD presented: 256 CUs (8 XCDs x 32) "
            "x 8,192 FP8 FLOP per clock per CU x 2.4 GHz = 5,033 TFLOP/s fp8, half that for fp16/bf16 and "
            "twice it for MXFP4 (AMD rounds these to 5, 2.5 and 10 PFLOP/s). Scale-up: 7 Infinity Fabric "
            "links of 153.6 GB/s each, as secondary write-ups give it (unverified). CDNA 4.",
        ),
        Accelerator(
            name="Ascend-910B", vendor="Huawei", year=2023,
            dense_tflops={"bf16": 320.0, "fp16": 320.0, "int8": 640.0},
            hbm_gb=64.0, hbm_tbps=1.6, scaleup_gbps=392.0, tdp_w=310.0, source="boardor2025ascend",
            notes="REPORTED, not a vendor datasheet: Huawei publishes no 910B datasheet. FP16 ~320 TFLOP/s, "
            "64 GB HBM2e and 310 W from the cited report (other reports give 256-376 TFLOP/s and 310-400 W). "
            "Bandwidth: the cited report prints 400 GB/s and others up to 1.6 TB/s; the table uses 1.6 TB/s, "
            "the per-die HBM bandwidth Huawei gives for the 910C (zuo2025cloudmatrix), whose dies are reported "
            "to be 910B-class. HCCS 392 GB/s (7 links x 56 GB/s) is the commonly quoted per-chip figure. bf16 "
            "taken equal to fp16 (Da Vinci cube unit).",
        ),
        Accelerator(
            name="Ascend-910C", vendor="Huawei", year=2025,
            dense_tflops={"bf16": 752.0, "fp16": 752.0},
            hbm_gb=128.0, hbm_tbps=3.2, scaleup_gbps=784.0, tdp_w=float("nan"), source="zuo2025cloudmatrix",
            notes="Huawei's CloudMatrix384 paper (not a datasheet): two dies per package, ~376 TFLOP/s dense "
            "BF16/FP16, 64 GB and 1.6 TB/s of HBM per die. Press reports quote 780-800 TFLOP/s. Unified Bus "
            "(UB): 392 GB/s each way per chip (196 GB/s per die), stored as 784 GB/s to count both directions "
            "like the NVLink rows. Board power is unpublished (NaN).",
        ),
    ]
}

# Accepted spellings -> canonical key (matched case-insensitively after normalisation).
_ALIASES: dict[str, str] = {
    "a100": "A100-SXM-80GB", "a100-sxm": "A100-SXM-80GB", "a100-80gb": "A100-SXM-80GB",
    "h100": "H100-SXM", "h800": "H800-SXM", "h200": "H200-SXM",
    "mi300": "MI300X", "mi355": "MI355X", "b300-sxm": "B300", "910b": "Ascend-910B", "910c": "Ascend-910C",
}


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


def accelerator_names() -> list[str]:
    """The canonical names in `ACCELERATORS`, in table order."""
    return list(ACCELERATORS)


def accelerator(name: str) -> Accelerator:
    """Look up an accelerator by name, case-insensitively ("h100-sxm", "H100", "Ascend 910B").

    Raises KeyError listing the known names when `name` matches none.
    """
    if not isinstance(name, str):
        raise KeyError(f"accelerator name must be a string, got {type(name).__name__}; known: {accelerator_names()}")
    wanted = _normalise(name)
    for key, acc in ACCELERATORS.items():
        if _normalise(key) == wanted:
            return acc
    if wanted in _ALIASES:
        return ACCELERATORS[_ALIASES[wanted]]
    raise KeyError(f"unknown accelerator {name!r}; known names: {accelerator_names()}")
