"""Published failure data of large training runs, as data with its sources.

`LLAMA3_INTERRUPTIONS` is Table 5 of the Llama 3 paper (Grattafiori et al. 2024): the root
causes of the 419 unexpected interruptions in a 54-day snapshot of the 405B pre-training on
16,384 H100 GPUs (466 interruptions in all, 47 of them planned). Each row keeps the count and
the percentage *as printed*. They do not all agree: 148 / 419 is 35.3 %, not the printed
30.1 %, while 72 / 419 = 17.2 % matches; `interruption_table` recomputes the shares so the
chapter can show both. The paper's text says about 78 % of the unexpected interruptions were
attributed to confirmed or suspected hardware issues.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Interruption", "LLAMA3_INTERRUPTIONS", "LLAMA3_RUN", "interruption_table", "hardware_share",
           "mtbf_hours"]

SOURCE = "Grattafiori et al. 2024, The Llama 3 Herd of Models, Table 5 and Section 3.3.4 (arXiv:2407.21783)"


@dataclass(frozen=True)
class Interruption:
    """One row of a published root-cause table."""

    component: str
    category: str
    count: int
    printed_percent: float
    hardware: bool          # the chapter's reading: a hardware component (True) or not


LLAMA3_INTERRUPTIONS: tuple[Interruption, ...] = (
    Interruption("Faulty GPU", "GPU", 148, 30.1, True),
    Interruption("GPU HBM3 Memory", "GPU", 72, 17.2, True),
    Interruption("Software Bug", "Dependency", 54, 12.9, False),
    Interruption("Network Switch/Cable", "Network", 35, 8.4, True),
    Interruption("Host Maintenance", "Unplanned Maintenance", 32, 7.6, False),
    Interruption("GPU SRAM Memory", "GPU", 19, 4.5, True),
    Interruption("GPU System Processor", "GPU", 17, 4.1, True),
    Interruption("NIC", "Host", 7, 1.7, True),
    Interruption("NCCL Watchdog Timeouts", "Unknown", 7, 1.7, False),
    Interruption("Silent Data Corruption", "GPU", 6, 1.4, True),
    Interruption("GPU Thermal Interface + Sensor", "GPU", 6, 1.4, True),
    Interruption("SSD", "Host", 3, 0.7, True),
    Interruption("Power Supply", "Host", 3, 0.7, True),
    Interruption("Server Chassis", "Host", 2, 0.5, True),
    Interruption("IO Expansion Board", "Host", 2, 0.5, True),
    Interruption("Dependency", "Dependency", 2, 0.5, False),
    Interruption("CPU", "Host", 2, 0.5, True),
    Interruption("System Memory", "Host", 2, 0.5, True),
)

LLAMA3_RUN = {"gpus": 16_384, "days": 54, "interruptions": 466, "planned": 47, "unexpected": 419,
              "hardware_share_printed": 0.78, "effective_training_time": 0.90, "source": SOURCE}


def interruption_table(rows: tuple[Interruption, ...] = LLAMA3_INTERRUPTIONS,
                       total: int | None = None) -> list[dict]:
    """One dict per row: component, category, count, printed percent, the percent recomputed
    from the count (of `total`, default the sum of the counts) and their difference."""
    total = sum(r.count for r in rows) if total is None else total
    if total <= 0:
        raise ValueError(f"total must be > 0, got {total!r}")
    return [{"component": r.component, "category": r.category, "count": r.count,
             "printed_percent": r.printed_percent, "recomputed_percent": round(100 * r.count / total, 1),
             "difference": round(100 * r.count / total - r.printed_percent, 1)} for r in rows]


def hardware_share(rows: tuple[Interruption, ...] = LLAMA3_INTERRUPTIONS) -> dict[str, float]:
    """Share of interruptions on hardware components, from the counts and from the printed percents."""
    total = sum(r.count for r in rows)
    return {"from_counts": sum(r.count for r in rows if r.hardware) / total,
            "from_printed_percents": sum(r.printed_percent for r in rows if r.hardware) / 100}


def mtbf_hours(interruptions: int, days: float, gpus: int, scale_to_gpus: int | None = None) -> float:
    """Mean hours between interruptions of a job; with `scale_to_gpus`, the same per-GPU failure
    rate projected to a job of that many GPUs (failures add up across independent components)."""
    if interruptions < 1 or days <= 0 or gpus < 1:
        raise ValueError("need interruptions >= 1, days > 0, gpus >= 1")
    hours = days * 24 / interruptions
    return hours if scale_to_gpus is None else hours * gpus / scale_to_gpus
