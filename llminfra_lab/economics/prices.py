"""What a token costs: a sourced table of published API list prices (chapter 1, part 3).

`PRICE_HISTORY` holds list prices at launch (standard tier, no batch or cache
discounts), each row with the citation key of its source; `fit_price_trend` fits the
rate at which the blended price of a tier has fallen.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

__all__ = ["PricePoint", "PRICE_HISTORY", "TIERS", "price_history", "blended_price", "fit_price_trend"]


@dataclass(frozen=True)
class PricePoint:
    """One published API list price, in USD per million tokens, at the date it took effect."""

    model: str
    provider: str
    tier: str          # "gpt-4-class", "gpt-3.5-class" or "reasoning"
    date: date
    usd_per_m_input: float
    usd_per_m_output: float
    source: str        # citation key in references.bib
    note: str = ""

    @property
    def year(self) -> float:
        """The date as a fractional year (2024-07-01 is about 2024.5)."""
        start = date(self.date.year, 1, 1)
        days = (date(self.date.year + 1, 1, 1) - start).days
        return self.date.year + (self.date - start).days / days


TIERS = ("gpt-4-class", "gpt-3.5-class", "reasoning")

# List prices at launch (standard tier, no batch or cache discounts). Each row was checked
# against its source; the tier is the book's grouping, by what the provider compared the
# model with.
PRICE_HISTORY: tuple[PricePoint, ...] = (
    PricePoint("text-davinci-003", "OpenAI", "gpt-3.5-class", date(2022, 11, 28), 20.0, 20.0,
               "openai2023chatgptapi", "USD 0.02 per 1K tokens; gpt-3.5-turbo was announced at one tenth of it"),
    PricePoint("gpt-3.5-turbo", "OpenAI", "gpt-3.5-class", date(2023, 3, 1), 2.0, 2.0,
               "openai2023chatgptapi", "USD 0.002 per 1K tokens, input and output alike"),
    PricePoint("gpt-4 (8K)", "OpenAI", "gpt-4-class", date(2023, 3, 14), 30.0, 60.0,
               "openai2023gpt4", "USD 0.03 / 0.06 per 1K prompt / completion tokens"),
    PricePoint("gpt-3.5-turbo-1106", "OpenAI", "gpt-3.5-class", date(2023, 11, 6), 1.0, 2.0,
               "openai2023devday"),
    PricePoint("gpt-4-turbo (1106-preview)", "OpenAI", "gpt-4-class", date(2023, 11, 6), 10.0, 30.0,
               "openai2023devday", "3x cheaper input, 2x cheaper output than gpt-4"),
    PricePoint("gpt-3.5-turbo-0125", "OpenAI", "gpt-3.5-class", date(2024, 1, 25), 0.5, 1.5,
               "openai2024apiupdates"),
    PricePoint("gpt-4o", "OpenAI", "gpt-4-class", date(2024, 5, 13), 5.0, 15.0,
               "openai2024gpt4o", "half the price of gpt-4-turbo"),
    PricePoint("gpt-4o-mini", "OpenAI", "gpt-3.5-class", date(2024, 7, 18), 0.15, 0.60,
               "openai2024gpt4omini", "replaced GPT-3.5 in ChatGPT; over 60% cheaper than gpt-3.5-turbo"),
    PricePoint("gpt-4o-2024-08-06", "OpenAI", "gpt-4-class", date(2024, 8, 6), 2.5, 10.0,
               "openai2024structured"),
    PricePoint("o1", "OpenAI", "reasoning", date(2024, 12, 17), 15.0, 60.0,
               "openai2024o1api", "o1-2024-12-17; reasoning tokens are billed as output"),
    PricePoint("deepseek-chat (DeepSeek-V3)", "DeepSeek", "gpt-4-class", date(2024, 12, 26), 0.27, 1.10,
               "deepseek2025pricing", "cache-miss input; a promotional discount ran until 2025-02-08"),
    PricePoint("deepseek-reasoner (DeepSeek-R1)", "DeepSeek", "reasoning", date(2025, 1, 20), 0.55, 2.19,
               "deepseek2025pricing", "cache-miss input; reasoning tokens are billed as output"),
)


def price_history(tier: str | None = None, provider: str | None = None) -> list[PricePoint]:
    """Rows of `PRICE_HISTORY`, oldest first, optionally only one `tier` and/or `provider`."""
    if tier is not None and tier not in TIERS:
        raise KeyError(f"unknown tier {tier!r}; valid tiers: {', '.join(TIERS)}")
    providers = sorted({p.provider for p in PRICE_HISTORY})
    if provider is not None and provider not in providers:
        raise KeyError(f"unknown provider {provider!r}; valid providers: {', '.join(providers)}")
    rows = [p for p in PRICE_HISTORY
            if (tier is None or p.tier == tier) and (provider is None or p.provider == provider)]
    return sorted(rows, key=lambda p: p.date)


def blended_price(point: PricePoint, input_share: float = 0.75) -> float:
    """USD per million tokens of a workload whose tokens are `input_share` input, the rest output.

    The default 3 input tokens to 1 output token is a common convention for chat workloads.
    """
    if not isinstance(point, PricePoint):
        raise ValueError(f"point must be a PricePoint, got {type(point).__name__}")
    if not 0.0 <= input_share <= 1.0:
        raise ValueError(f"input_share must be between 0 and 1, got {input_share}")
    return input_share * point.usd_per_m_input + (1.0 - input_share) * point.usd_per_m_output


def fit_price_trend(points: Iterable[PricePoint], input_share: float = 0.75) -> tuple[float, float]:
    """Least-squares fit of log10(blended price) against the year.

    Returns (`factor_per_year`, `half_life_years`): the price is multiplied by
    `factor_per_year` each year (0.1 means ten times cheaper a year) and halves every
    `half_life_years`. Needs at least two points at different dates.
    """
    pts = list(points)
    if len(pts) < 2:
        raise ValueError(f"need at least 2 price points to fit a trend, got {len(pts)}")
    xs = [p.year for p in pts]
    ys = [math.log10(blended_price(p, input_share)) for p in pts]
    x_mean, y_mean = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - x_mean) ** 2 for x in xs)
    if sxx == 0.0:
        raise ValueError("price points must span more than one date to fit a trend")
    slope = sum((x - x_mean) * (y - y_mean) for x, y in zip(xs, ys)) / sxx
    factor = 10.0 ** slope
    half_life = math.log10(0.5) / slope if slope < 0 else math.inf
    return factor, half_life

