"""Exchange rates (SPEC S1): which rate applies on a day. One lookup for invoicing, previews,
metrics and usage alerts, so that they can never disagree about a conversion."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

# (from currency, to currency) -> [(effective from, rate)], sorted by effective date.
Rates = dict[tuple[str, str], list[tuple[date, Decimal]]]


class NoRate(ValueError):
    """No rate from one currency to the other is effective on the day asked."""


def rate_on(rates: Rates, source: str, target: str, on: date) -> Decimal | None:
    """The rate effective on ``on`` (the latest one effective on or before it); ``None`` when no
    conversion is needed (same currency). Raises :class:`NoRate`."""
    if source == target:
        return None
    best = None
    for effective, rate in rates.get((source, target), ()):
        if effective <= on:
            best = rate
    if best is None:
        raise NoRate(f"no {source}->{target} exchange rate effective on {on}")
    return best
