"""Tests for llminfra_lab.hardware: the spec table against the datasheets it cites."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from llminfra_lab import hardware
from llminfra_lab.hardware import ACCELERATORS, PRECISIONS, Accelerator, accelerator

REQUIRED = ["A100-SXM-80GB", "H100-SXM", "H800-SXM", "H200-SXM", "B200", "B300", "MI300X", "MI355X",
            "Ascend-910B", "Ascend-910C"]
BIB = Path(__file__).resolve().parents[1] / "references.bib"


def test_required_rows_present():
    for name in REQUIRED:
        assert name in ACCELERATORS
        assert ACCELERATORS[name].name == name


def test_h100_ridge_point_from_datasheet():
    """H100 SXM: 989 dense BF16 TFLOP/s and 3.35 TB/s HBM3 give a ridge point near 295 FLOP/byte
    (NVIDIA H100 datasheet: 1,979 TFLOP/s bf16 *with sparsity*, 3.35 TB/s)."""
    h100 = accelerator("H100-SXM")
    assert h100.dense_tflops["bf16"] == pytest.approx(1979 / 2)
    assert h100.hbm_tbps == pytest.approx(3.35)
    assert h100.ridge_point("bf16") == pytest.approx(295.4, abs=0.5)


@pytest.mark.parametrize(
    "name, sparse_bf16_tflops, hbm_tbps",
    [
        ("A100-SXM-80GB", 624, 2.039),   # NVIDIA A100 datasheet
        ("H100-SXM", 1979, 3.35),        # NVIDIA H100 datasheet
        ("H200-SXM", 1979, 4.8),         # NVIDIA H200 product page
        ("B200", 4500, 7.7),             # NVIDIA HGX B200 per-GPU specification
    ],
)
def test_nvidia_rows_store_half_the_sparse_datasheet_figure(name, sparse_bf16_tflops, hbm_tbps):
    """NVIDIA prints bf16 Tensor Core throughput with 2:4 sparsity; the table stores dense = half."""
    acc = accelerator(name)
    assert acc.dense_tflops["bf16"] == pytest.approx(sparse_bf16_tflops / 2)
    assert acc.hbm_tbps == pytest.approx(hbm_tbps)
    assert "sparsity" in acc.notes


# Datasheet tables as printed, Tensor Core entries WITH 2:4 sparsity (asterisked), other entries as
# printed. Sources: NVIDIA A100 80GB SXM, H100 SXM, H200 SXM datasheets; HGX B200 per-GPU column of
# NVIDIA's HGX specification table. Keys: sparse Tensor Core TFLOP/s per precision, then plain
# (non-sparse) entries, HBM GB, HBM TB/s, NVLink GB/s, max power W.
_NVIDIA_DATASHEETS = {
    "A100-SXM-80GB": dict(sparse={"tf32": 312, "bf16": 624, "fp16": 624, "int8": 1248},
                          plain={"fp64": 19.5, "fp32": 19.5}, hbm_gb=80, hbm_tbps=2.039, nvlink=600, watts=400),
    "H100-SXM": dict(sparse={"tf32": 989, "bf16": 1979, "fp16": 1979, "fp8": 3958, "int8": 3958},
                     plain={"fp64": 67, "fp32": 67}, hbm_gb=80, hbm_tbps=3.35, nvlink=900, watts=700),
    "H200-SXM": dict(sparse={"tf32": 989, "bf16": 1979, "fp16": 1979, "fp8": 3958, "int8": 3958},
                     plain={"fp64": 67, "fp32": 67}, hbm_gb=141, hbm_tbps=4.8, nvlink=900, watts=700),
    "B200": dict(sparse={"tf32": 2200, "bf16": 4500, "fp16": 4500, "fp8": 9000, "int8": 9000, "fp4": 18000},
                 plain={"fp64": 37, "fp32": 75}, hbm_gb=180, hbm_tbps=7.7, nvlink=1800, watts=1000),
}


@pytest.mark.parametrize("name", sorted(_NVIDIA_DATASHEETS))
def test_nvidia_rows_match_every_datasheet_entry(name):
    """Every stored NVIDIA figure equals the datasheet's: half of each sparse Tensor Core figure
    (tf32 989* -> 494.5 dense on the H100), the non-Tensor-Core entries unchanged, and the
    memory, NVLink and power lines as printed. Datasheets round (TF32 989 is 2 x 494.7), so the
    comparison allows 0.1 %."""
    sheet, acc = _NVIDIA_DATASHEETS[name], accelerator(name)
    expected = {p: v / 2 for p, v in sheet["sparse"].items()} | sheet["plain"]
    assert set(acc.dense_tflops) == set(expected)
    for p, v in expected.items():
        assert acc.dense_tflops[p] == pytest.approx(v, rel=1e-3), p
    assert (acc.hbm_gb, acc.scaleup_gbps, acc.tdp_w) == (sheet["hbm_gb"], sheet["nvlink"], sheet["watts"])
    assert acc.hbm_tbps == pytest.approx(sheet["hbm_tbps"])


def test_b300_is_the_hgx_b300_column_divided_by_eight():
    """NVIDIA HGX B300 (8 GPUs): bf16 36*, fp8 72*, fp4 144* | 105 dense PFLOP/s, fp64 10 TFLOP/s; NVIDIA's
    Blackwell Ultra article: 288 GB of HBM3e at 8 TB/s, NVLink 5 at 1.8 TB/s."""
    b = accelerator("B300")
    assert b.dense_tflops["bf16"] == pytest.approx(36_000 / 2 / 8)
    assert b.dense_tflops["fp8"] == pytest.approx(72_000 / 2 / 8)
    assert b.dense_tflops["fp4"] == pytest.approx(105_000 / 8)
    assert b.dense_tflops["fp64"] == pytest.approx(10 / 8)
    assert (b.hbm_gb, b.hbm_tbps, b.scaleup_gbps) == (288.0, 8.0, 1800.0)
    assert "int8" not in b.dense_tflops and math.isnan(b.tdp_w)


def test_mi355x_dense_figures_from_its_architecture_and_marked_reported():
    """AMD MI355X as reported (ISC 2025 launch, ISSCC 2026): 256 CUs x 8,192 FP8 FLOP/clock/CU x 2.4 GHz;
    fp16/bf16 at half the fp8 rate; 288 GB at 8 TB/s; 1,400 W. Not from AMD's datasheet, and labelled so."""
    mi = accelerator("MI355X")
    assert mi.dense_tflops["fp8"] == pytest.approx(256 * 8192 * 2.4e9 / 1e12, rel=1e-4)
    assert mi.dense_tflops["bf16"] == pytest.approx(mi.dense_tflops["fp8"] / 2)
    assert (mi.hbm_gb, mi.hbm_tbps, mi.tdp_w) == (288.0, 8.0, 1400.0)
    assert mi.dense_tflops["fp4"] == pytest.approx(2 * mi.dense_tflops["fp8"], rel=1e-4)   # ~10 PFLOP/s dense FP4
    assert mi.notes.startswith("REPORTED")


def test_h800_cites_deepseeks_isca_paper_and_stores_no_fp64_figure():
    """Zhao et al. (ISCA '25), section 4.1: NVLink reduced from 900 to 400 GB/s on H800 SXM nodes; FP64
    reduced by an amount the paper does not give."""
    h800, h100 = accelerator("H800-SXM"), accelerator("H100-SXM")
    assert h800.source == "zhao2025insights"
    assert h800.scaleup_gbps == 400.0 and h100.scaleup_gbps == 900.0
    assert "fp64" not in h800.dense_tflops
    assert h800.dense_tflops["bf16"] == h100.dense_tflops["bf16"]


def test_sparse_only_datasheets_start_with_the_h100():
    """The A100 datasheet prints dense and sparse Tensor Core figures; from the H100 on, only sparse."""
    assert "both dense and with 2:4 sparsity" in accelerator("A100-SXM-80GB").notes
    for name in ["H100-SXM", "H200-SXM", "B200", "B300"]:
        assert "only with 2:4 sparsity" in accelerator(name).notes


def test_mi300x_scaleup_is_seven_infinity_fabric_links():
    """AMD MI300X: 128 GB/s peak per Infinity Fabric link; 7 links reach the 7 peers of an 8-GPU platform."""
    assert accelerator("MI300X").scaleup_gbps == pytest.approx(7 * 128)
    assert accelerator("MI300X").tdp_w == pytest.approx(750)


def test_mi300x_dense_fp16_from_amd_datasheet():
    """AMD MI300X datasheet: 1,307.4 TFLOP/s peak FP16 dense (2,614.9 with sparsity), 5.3 TB/s, 192 GB."""
    mi = accelerator("MI300X")
    assert mi.dense_tflops["fp16"] == pytest.approx(1307.4)
    assert mi.hbm_tbps == pytest.approx(5.3)
    assert mi.hbm_gb == pytest.approx(192)


def test_ascend_910c_is_two_dies_as_huawei_describes():
    """Zuo et al. 2025 (CloudMatrix384): per die ~376 TFLOP/s BF16, 64 GB, 1.6 TB/s; two dies per 910C."""
    c = accelerator("Ascend-910C")
    assert c.dense_tflops["bf16"] == pytest.approx(2 * 376)
    assert c.hbm_gb == pytest.approx(2 * 64)
    assert c.hbm_tbps == pytest.approx(2 * 1.6)
    assert math.isnan(c.tdp_w)


def test_chinese_rows_are_marked_as_reported_or_paper():
    for name in ["Ascend-910B", "H800-SXM", "MI355X"]:
        assert "report" in ACCELERATORS[name].notes.lower()
    assert "not a datasheet" in ACCELERATORS["Ascend-910C"].notes


def test_peak_flops_is_tflops_times_1e12_for_every_row_and_precision():
    for acc in ACCELERATORS.values():
        for p, tflops in acc.dense_tflops.items():
            assert p in PRECISIONS
            assert acc.peak_flops(p) == pytest.approx(tflops * 1e12)
            # ridge point recomputed by hand: FLOP/s over bytes/s
            assert acc.ridge_point(p) == pytest.approx(tflops * 1e12 / (acc.hbm_tbps * 1e12))


def test_every_source_key_is_in_references_bib():
    keys = set(re.findall(r"@\w+\{([^,]+),", BIB.read_text(encoding="utf-8")))
    for acc in ACCELERATORS.values():
        assert acc.source in keys, f"{acc.name}: {acc.source} missing from references.bib"


def test_generations_get_faster():
    """Each NVIDIA generation raises dense bf16 peak and HBM bandwidth (A100 < H100 < B200)."""
    a, h, b = (accelerator(n) for n in ["A100-SXM-80GB", "H100-SXM", "B200"])
    assert a.peak_flops("bf16") < h.peak_flops("bf16") < b.peak_flops("bf16")
    assert a.hbm_tbps < h.hbm_tbps < b.hbm_tbps


@pytest.mark.parametrize("spelling", ["H100-SXM", "h100-sxm", "  H100_SXM ", "h100", "H100 SXM"])
def test_lookup_is_case_insensitive(spelling):
    assert accelerator(spelling) is ACCELERATORS["H100-SXM"]


def test_lookup_aliases():
    assert accelerator("Ascend 910B").name == "Ascend-910B"
    assert accelerator("a100").name == "A100-SXM-80GB"
    assert accelerator("mi355").name == "MI355X"
    assert hardware.accelerator_names() == list(ACCELERATORS)


# --- bad input -----------------------------------------------------------------------------

def test_unknown_name_raises_keyerror_listing_names():
    with pytest.raises(KeyError, match="unknown accelerator") as err:
        accelerator("TPU-v9")
    for name in REQUIRED:
        assert name in str(err.value)


def test_non_string_name_raises_keyerror():
    with pytest.raises(KeyError, match="string"):
        accelerator(100)  # type: ignore[arg-type]


def test_unknown_precision_raises_valueerror_listing_precisions():
    with pytest.raises(ValueError, match="fp8"):
        accelerator("A100-SXM-80GB").peak_flops("fp8")  # the A100 has no FP8 Tensor Cores
    with pytest.raises(ValueError, match="bf16"):
        accelerator("H100-SXM").ridge_point("int4")


def _row(**over):
    base = dict(name="X", vendor="V", year=2024, dense_tflops={"bf16": 1.0}, hbm_gb=1.0, hbm_tbps=1.0,
                scaleup_gbps=1.0, tdp_w=1.0, source="k")
    base.update(over)
    return Accelerator(**base)


@pytest.mark.parametrize(
    "over, match",
    [
        ({"dense_tflops": {"bf17": 1.0}}, "unknown precision"),
        ({"dense_tflops": {"bf16": -1.0}}, "positive"),
        ({"dense_tflops": {"bf16": float("inf")}}, "positive"),
        ({"hbm_gb": 0.0}, "hbm_gb"),
        ({"hbm_tbps": float("nan")}, "hbm_tbps"),
        ({"scaleup_gbps": -5.0}, "scaleup_gbps"),
        ({"tdp_w": -1.0}, "tdp_w"),
    ],
)
def test_constructor_validates(over, match):
    with pytest.raises(ValueError, match=match):
        _row(**over)


def test_rows_are_frozen():
    with pytest.raises(AttributeError, match="cannot assign"):
        ACCELERATORS["H100-SXM"].hbm_tbps = 10.0  # type: ignore[misc]
