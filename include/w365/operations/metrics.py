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
from w365.core.ledger import BillingTimeline, Change, State
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
from w365.core.fx import NoRate, Rates, rate_on

log = logging.getLogger(__name__)

JOB = "update_metrics_on_billing_contract"



def _rate(rates: Rates, source: str, target: str, on: date) -> Fraction:
    rate = rate_on(rates, source, target, on)
    return Fraction(1) if rate is None else Fraction(rate)


def licence_states(session: Session, contract_ids: list[int], day: date) -> list[tuple[int, int, str, State]]:
    """(subscription, contract, currency, state) of every licence subscription of these contracts,
    as billed on ``day``: the ledger's own fold (``core.ledger.BillingTimeline``) over its written
    changes, the one implementation invoicing uses too (scheduled changes are not facts yet)."""
    l, s, p = LicenseChangeLog, Subscription, Product
    rows = session.execute(
        select(
            l.id, l.subscription_id, l.bill_from, s.contract_id, s.currency,
            l.quantity_before, l.selling_price_before, l.cost_price_before, l.sales_unit_before, l.status_before,
            l.quantity_after, l.selling_price_after, l.cost_price_after, l.sales_unit_after, l.status_after,
        )
        .join(s, s.id == l.subscription_id)
        .join(p, p.id == s.product_id)
        .where(s.contract_id.in_(contract_ids), p.kind == ProductKind.LICENSE)
    ).all()
    changes: dict[int, list[Change]] = defaultdict(list)
    owner: dict[int, tuple[int, str]] = {}
    for lcl_id, sid, bill_from, cid, cur, q0, sp0, cp0, su0, st0, q1, sp1, cp1, su1, st1 in rows:
        changes[sid].append(Change(lcl_id, bill_from, State(q0, sp0, cp0, su0, st0), State(q1, sp1, cp1, su1, st1), order=lcl_id))
        owner[sid] = (cid, cur)
    out = []
    for sid in sorted(changes):
        segment = BillingTimeline(changes[sid]).state_on(day)
        if segment is not None:
            out.append((sid, *owner[sid], segment.state))
    return out


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
    for sid, cid, cur, state in licence_states(session, ids, as_of):
        if state.status != "active" or cid in bad:
            continue
        unit_months = months.get(state.sales_unit)
        if not unit_months:
            continue  # one-time units are not recurring revenue
        try:
            lic[cid] += Fraction(int(state.quantity)) * Fraction(state.selling_price) / unit_months * _rate(rates, cur, currency[cid], as_of)
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
            use[cid] += Fraction(cost) * markup_factor(markup or Decimal(0)) * _rate(rates, cur, currency[cid], as_of)
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
