"""Update Metrics On Billing Contract: MRR and ACV per contract (set-based, with pandas).

Definitions (decisions), for a run date D and each active contract, in the contract's currency:

* **Licence MRR**: for every licence subscription of the contract that is active on D, as its
  License Change Logs say for day D (the same fold as billing: each change sets the fields it
  changes from its bill-from day; pending scheduled changes do not count yet), quantity x selling
  price per sales unit, normalised to one month with the unit mapping (Annual = 12 months,
  Triennial = 36, ...), converted with the exchange rate effective on D when the subscription is
  priced in another currency. One-time charges are not recurring and are left out.
* **Usage MRR** (trailing month): the final usage of the contract's usage subscriptions in the
  last complete calendar month before D, at cost x (1 + markup %), converted at the rate
  effective on D. Interim usage is not counted.
* **MRR** = licence MRR + usage MRR, computed exactly and rounded once, half up, to the currency's
  minor unit; **ACV** = 12 x MRR (exact, rounded once).

Stored on the contract (``mrr``, ``acv``, ``metrics_as_of``; a backfill of an older date does not
overwrite newer figures) and as a snapshot row per contract and date (``contract_metric_snapshot``,
replaced on a rerun), so trends can be plotted. A contract that stops being active gets one last
snapshot of 0. A contract that cannot be valued (e.g. no exchange rate) keeps its previous figures
and is reported.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.orm import Session

from w365.core.calendar import add_months
from w365.store.models import (
    BillingContract,
    ContractMetricSnapshot,
    ContractStatus,
    LicenseChangeLog,
    Product,
    ProductKind,
    Subscription,
    UnitMapping,
    UsageKind,
)
from w365.store.session import get_engine, session_scope
from w365.store.job_report import record_exceptions
from w365.billing.invoicing.loader import load_rates
from w365.core.money import UnknownCurrency, minor_units, round_money
from w365.billing.usage import markup_factor, usage_sums

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

JOB = "update_metrics_on_billing_contract"
FOLDED = ("quantity", "selling_price", "sales_unit", "status")


class NoRate(Exception):
    pass


def _v(x: Any) -> Any:
    return getattr(x, "value", x)


def rate_on(rates: dict[tuple[str, str], list[tuple[date, Decimal]]], source: str, target: str, on: date) -> Fraction:
    if source == target:
        return Fraction(1)
    best = None
    for eff, rate in rates.get((source, target), ()):
        if eff <= on:
            best = rate
    if best is None:
        raise NoRate(f"no {source}->{target} exchange rate effective on {on}")
    return Fraction(best)


def states_on(lcls: "pd.DataFrame", day: date) -> "pd.DataFrame":
    """Each subscription's (quantity, selling price, sales unit, status) billed on ``day``.

    Vectorised form of the ledger's timeline: per field, the value set by the latest-written
    change among those billed from ``day`` or before that changed it; the first-written change
    (the activation) sets every field."""
    import pandas as pd

    if lcls.empty:
        return pd.DataFrame(columns=["subscription_id", *FOLDED])
    first_id = lcls.groupby("subscription_id")["id"].transform("min")
    due = lcls[lcls["bill_from"] <= day].assign(is_first=lambda d: d["id"] == first_id.loc[d.index])
    due = due.sort_values(["subscription_id", "id"])  # the latest-written wins
    out = pd.DataFrame({"subscription_id": due["subscription_id"].unique()})
    for f in FOLDED:
        changed = due["is_first"] | (due[f + "_before"] != due[f + "_after"])
        last = due[changed].groupby("subscription_id")[f + "_after"].last()
        out[f] = out["subscription_id"].map(last)
    return out


def _licence_lcls(session: Session, contract_ids: list[int]) -> "pd.DataFrame":
    import pandas as pd

    l, s, p = LicenseChangeLog, Subscription, Product
    rows = session.execute(
        select(
            l.id, l.subscription_id, l.bill_from, s.contract_id, s.currency,
            l.quantity_before, l.quantity_after, l.selling_price_before, l.selling_price_after,
            l.sales_unit_before, l.sales_unit_after, l.status_before, l.status_after,
        )
        .join(s, s.id == l.subscription_id)
        .join(p, p.id == s.product_id)
        .where(s.contract_id.in_(contract_ids), p.kind == ProductKind.LICENSE)
    ).all()
    cols = ["id", "subscription_id", "bill_from", "contract_id", "currency", "quantity_before", "quantity_after",
            "selling_price_before", "selling_price_after", "sales_unit_before", "sales_unit_after", "status_before", "status_after"]
    frame = pd.DataFrame(rows, columns=cols).astype({"selling_price_before": object, "selling_price_after": object})
    for c in ("status_before", "status_after"):
        frame[c] = frame[c].map(_v)
    return frame


@dataclass
class ContractMetrics:
    contract_id: int
    currency: str
    mrr_exact: Fraction
    licence: Fraction
    usage: Fraction

    @property
    def mrr(self) -> Decimal:
        return round_money(self.mrr_exact, self.currency)

    @property
    def acv(self) -> Decimal:
        return round_money(self.mrr_exact * 12, self.currency)


def compute(session: Session, as_of: date, contracts: "pd.DataFrame") -> tuple[dict[int, ContractMetrics], dict[int, str]]:
    """Metrics for the given active contracts (columns id, number, currency)."""
    ids = [int(i) for i in contracts["id"]]
    currency = dict(zip(contracts["id"], contracts["currency"]))
    months = {code: m for code, m in session.execute(select(UnitMapping.code, UnitMapping.months))}
    rates = load_rates(session)
    lic: dict[int, Fraction] = defaultdict(Fraction)
    use: dict[int, Fraction] = defaultdict(Fraction)
    bad: dict[int, str] = {}
    for cid in ids:
        try:
            minor_units(currency[cid])
        except UnknownCurrency as exc:
            bad[cid] = str(exc)
    lcls = _licence_lcls(session, ids)
    if not lcls.empty:
        subs = lcls.drop_duplicates("subscription_id").set_index("subscription_id")[["contract_id", "currency"]]
        states = states_on(lcls, as_of)
        states = states[states["status"] == "active"].join(subs, on="subscription_id")
        for sid, cid, cur, qty, price, unit in zip(states["subscription_id"], states["contract_id"], states["currency"],
                                                  states["quantity"], states["selling_price"], states["sales_unit"]):
            if cid in bad:
                continue
            unit_months = months.get(unit)
            if not unit_months:
                continue  # one-time units are not recurring revenue
            try:
                lic[cid] += Fraction(int(qty)) * Fraction(price) / unit_months * rate_on(rates, cur, currency[cid], as_of)
            except NoRate as exc:
                bad[cid] = f"subscription #{sid}: {exc}"
    # Trailing month of final usage.
    first = add_months(as_of.replace(day=1), -1)
    last = as_of.replace(day=1) - timedelta(days=1)
    usage_subs = {
        sid: (cid, markup)
        for sid, cid, markup in session.execute(
            select(Subscription.id, Subscription.contract_id, Subscription.markup_pct)
            .join(Product, Product.id == Subscription.product_id)
            .where(Subscription.contract_id.in_(ids), Product.kind == ProductKind.USAGE)
        )
    }
    for (sid, _day, _kind, cur), cost in usage_sums(session, first, last, [UsageKind.FINAL.value], list(usage_subs)).items():
        cid, markup = usage_subs[sid]
        if cid in bad:
            continue
        try:
            use[cid] += Fraction(cost) * markup_factor(markup or Decimal(0)) * rate_on(rates, cur, currency[cid], as_of)
        except NoRate as exc:
            bad[cid] = f"usage of subscription #{sid}: {exc}"
    out = {
        cid: ContractMetrics(cid, currency[cid], lic[cid] + use[cid], lic[cid], use[cid])
        for cid in ids if cid not in bad
    }
    return out, bad


def update_metrics(as_of: date, *, now: Any, engine: Engine | None = None, batch: int = 5000) -> dict[str, Any]:
    import pandas as pd

    engine = engine or get_engine()
    c = BillingContract
    with session_scope(engine) as s:
        contracts = pd.DataFrame(
            s.execute(select(c.id, c.number, c.currency, c.status, c.mrr, c.metrics_as_of)).all(),
            columns=["id", "number", "currency", "status", "mrr", "metrics_as_of"],
        )
    contracts["status"] = contracts["status"].map(_v)
    active = contracts[contracts["status"] == ContractStatus.ACTIVE.value]
    # Contracts that stopped being active since their last figures: one last snapshot of 0.
    stopped = contracts[(contracts["status"] != ContractStatus.ACTIVE.value) & contracts["mrr"].map(lambda v: v is not None and v != 0)]
    report: dict[str, Any] = {"job": JOB, "as_of": as_of.isoformat(), "contracts": 0, "zeroed": 0, "mrr_by_currency": {},
                              "acv_by_currency": {}, "problems": {}}
    totals_mrr: dict[str, Decimal] = defaultdict(Decimal)
    totals_acv: dict[str, Decimal] = defaultdict(Decimal)
    numbers = dict(zip(contracts["id"], contracts["number"]))
    for i in range(0, max(len(active), 1), batch):
        chunk = active.iloc[i : i + batch]
        with session_scope(engine) as s:
            metrics, bad = compute(s, as_of, chunk) if len(chunk) else ({}, {})
            rows = [(m.contract_id, m.currency, m.mrr, m.acv) for m in metrics.values()]
            if i == 0:
                zero = [(int(r.id), r.currency, Decimal(0), Decimal(0)) for r in stopped.itertuples()]
                rows += zero
                report["zeroed"] = len(zero)
            _store(s, as_of, rows, now)
            problems = {numbers[cid]: reason for cid, reason in bad.items()}
            record_exceptions(s, JOB, as_of, "billing_contract", problems, cleared=[numbers[cid] for cid in metrics])
        for m in metrics.values():
            totals_mrr[m.currency] += m.mrr
            totals_acv[m.currency] += m.acv
        report["contracts"] += len(metrics)
        report["problems"].update(problems)
        log.info("%s: %d/%d active contract(s) valued", JOB, min(i + batch, len(active)), len(active))
    report["mrr_by_currency"] = {k: format(v, "f") for k, v in sorted(totals_mrr.items())}
    report["acv_by_currency"] = {k: format(v, "f") for k, v in sorted(totals_acv.items())}
    return report


def _store(session: Session, as_of: date, rows: list[tuple[int, str, Decimal, Decimal]], now: Any) -> None:
    """Snapshot rows replaced for the date; contract figures set unless newer ones are there."""
    if not rows:
        return
    ids = [r[0] for r in rows]
    for i in range(0, len(ids), 1000):
        session.execute(delete(ContractMetricSnapshot).where(ContractMetricSnapshot.as_of == as_of, ContractMetricSnapshot.contract_id.in_(ids[i : i + 1000])))
    session.execute(insert(ContractMetricSnapshot), [
        {"contract_id": cid, "as_of": as_of, "currency": cur, "mrr": mrr, "acv": acv, "created_at": now} for cid, cur, mrr, acv in rows
    ])
    newer = set()
    for i in range(0, len(ids), 1000):
        newer |= set(session.scalars(select(BillingContract.id).where(BillingContract.id.in_(ids[i : i + 1000]), BillingContract.metrics_as_of > as_of)))
    updates = [{"id": cid, "mrr": mrr, "acv": acv, "metrics_as_of": as_of} for cid, _cur, mrr, acv in rows if cid not in newer]
    if updates:
        session.execute(update(BillingContract), updates)
