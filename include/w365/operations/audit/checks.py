"""Loading the books and checking them (see ``w365.operations.audit``)."""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction
from typing import Any, NamedTuple, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from w365.operations.audit.arithmetic import (
    ISO_4217_MINOR_UNITS,
    ONE_DAY,
    PRICE_PLACES,
    _billed_text,
    _money,
    _round_ratio,
    _scheduled_bill_from,
    bill_from_day,
    billed_periods,
    line_amount,
    period_of,
    round_half_up,
)
from w365.operations.audit.tax import TaxTable, audit_numbering, check_document, check_line, expected_number
from w365.operations.audit.report import _STATUS_OF_ACTION, FIELDS, AuditReport, Difference, _Change, _DataError, _text, _Timeline
from w365.store.models import (
    BillingContract,
    ExchangeRate,
    Invoice,
    InvoiceLine,
    InvoiceLineLCL,
    InvoiceLineSLCL,
    LicenseChangeLog,
    Product,
    ScheduledLicenseChangeLog,
    SLCLStatus,
    Subscription,
    Tenant,
    UnitMapping,
)

CHUNK = 2000  # contracts loaded per round of queries


# --------------------------------------------------------------------------------------------
# Loading and checking


@dataclass
class _Reference:
    prefix: str
    next_number: int
    units: dict[str, int | None]
    rates: dict[tuple[str, str], tuple[list[date], list[Decimal]]]
    credit_prefix: str = "CN-"
    taxes: TaxTable | None = None
    credit_notes_from: int = 1

    @classmethod
    def load(cls, session: Session) -> "_Reference":
        tenant = session.execute(select(Tenant.invoice_prefix, Tenant.next_invoice_number, Tenant.credit_note_prefix,
                                        Tenant.credit_notes_from)).first()
        rates: dict[tuple[str, str], tuple[list[date], list[Decimal]]] = defaultdict(lambda: ([], []))
        r = ExchangeRate
        for src, dst, day, rate in session.execute(select(r.from_currency, r.to_currency, r.effective_from, r.rate).order_by(r.effective_from)):
            rates[(src, dst)][0].append(day)
            rates[(src, dst)][1].append(rate)
        return cls(tenant.invoice_prefix if tenant else "", tenant.next_invoice_number if tenant else 1,
                   dict(session.execute(select(UnitMapping.code, UnitMapping.months)).tuples().all()), dict(rates),
                   tenant.credit_note_prefix if tenant else "CN-", TaxTable(session), tenant.credit_notes_from if tenant else 1)

    def rate(self, src: str, dst: str, on: date) -> Decimal:
        """SPEC S1: the rate with the latest effective-from on or before ``on``."""
        days, rates = self.rates.get((src, dst), ([], []))
        i = bisect.bisect_right(days, on) - 1
        if i < 0:
            raise _DataError(f"no {src}->{dst} exchange rate effective on {on}")
        return rates[i]


class _Line(NamedTuple):
    id: int
    invoice: str
    no: int
    subscription: int | None
    kind: str
    start: date  # days billed, end exclusive
    end: date
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal
    billing_period: date  # its first day


def audit_billing(session: Session, contracts: Sequence[str] | None = None, *, chunk: int = CHUNK) -> AuditReport:
    """Audit the books of the given contract numbers (default: all, plus the tenant's invoice
    numbering). Loads a few queries per chunk of contracts, never per subscription. Give it a
    session that reads one snapshot when the store is live (the CLI does)."""
    ref = _Reference.load(session)
    report = AuditReport()
    c = BillingContract
    q = select(c.id, c.number, c.customer_id, c.currency, c.frequency, c.start_date, c.end_date, c.auto_renew, _text(c.status),
               c.next_invoice_date, c.billed_from, _text(c.change_billing)).order_by(c.id)
    if contracts:
        q = q.where(c.number.in_(list(contracts)))
    rows = session.execute(q).all()
    for i in range(0, len(rows), chunk):
        _Chunk(session, ref, rows[i : i + chunk], report).audit()
    if not contracts:
        _audit_numbering(session, ref, report)
    return report


def _audit_numbering(session: Session, ref: _Reference, report: AuditReport) -> None:
    """SPEC M2/J6/I6 decision: each series (invoices, credit notes) numbered 1..N without gaps
    or repeats, N = its counter - 1."""
    audit_numbering(session, lambda expected, found: report.differences.append(Difference("numbering", None, expected, found)))


class _Chunk:
    """One chunk of contracts: load everything in a few set-based queries, then check."""

    def __init__(self, session: Session, ref: _Reference, contracts: Sequence[Any], report: AuditReport):
        self.ref, self.contracts, self.report = ref, contracts, report
        ids = [r.id for r in contracts]
        S, L, SL, I, IL = Subscription, LicenseChangeLog, ScheduledLicenseChangeLog, Invoice, InvoiceLine
        run = session.connection().execute  # Core rows: no ORM loading machinery for plain columns
        self.subs = run(select(S.id, S.contract_id, S.currency, _text(Product.kind)).join(Product, Product.id == S.product_id)
                        .where(S.contract_id.in_(ids)).order_by(S.id)).all()
        self.lcls = run(select(L.id, L.subscription_id, L.quantity_before, L.quantity_after, L.selling_price_before, L.selling_price_after,
                               L.sales_unit_before, L.sales_unit_after, _text(L.status_before), _text(L.status_after), L.effective_date,
                               L.bill_from, L.apply_refund, L.slcl_id, _text(SL.change_effective), SL.direction.label("slcl_direction"))
                        .join(S, S.id == L.subscription_id).outerjoin(SL, SL.id == L.slcl_id)
                        .where(S.contract_id.in_(ids)).order_by(L.id)).all()
        self.slcls = run(select(SL.id, SL.subscription_id, _text(SL.action), _text(SL.change_effective), SL.quantity, SL.selling_price, SL.sales_unit,
                                SL.apply_refund, SL.direction, SL.effective_date, SL.bill_from)
                         .join(S, S.id == SL.subscription_id)
                         .where(S.contract_id.in_(ids), SL.status.in_((SLCLStatus.PENDING, SLCLStatus.AWAITING_MERGE)))
                         .order_by(SL.id)).all()
        self.invoices = run(select(I.id, I.number, I.sequence, I.contract_id, I.customer_id, I.currency, I.total, I.tax_total,
                                   _text(I.document), I.corrects_invoice_id, I.tax_exempt_reference)
                            .where(I.contract_id.in_(ids)).order_by(I.id)).all()
        self.lines = run(select(IL.id, IL.invoice_id, IL.line_no, IL.subscription_id, _text(IL.kind), IL.billing_period_from, IL.billing_period_to,
                                IL.period_from, IL.period_to, IL.quantity, IL.unit_price, IL.days, IL.period_days, IL.proration_factor, IL.amount,
                                IL.tax_code, IL.tax_rate, IL.tax_amount)
                         .join(I, I.id == IL.invoice_id).where(I.contract_id.in_(ids)).order_by(IL.invoice_id, IL.line_no)).all()
        # Links, with what they point at (an outer join: a link to a missing row shows as None).
        self.lcl_links = run(select(InvoiceLineLCL.invoice_line_id, InvoiceLineLCL.lcl_id, L.subscription_id, L.slcl_id)
                             .join(IL, IL.id == InvoiceLineLCL.invoice_line_id).join(I, I.id == IL.invoice_id)
                             .outerjoin(L, L.id == InvoiceLineLCL.lcl_id).where(I.contract_id.in_(ids))).all()
        self.slcl_links = run(select(InvoiceLineSLCL.invoice_line_id, InvoiceLineSLCL.slcl_id, SL.subscription_id, _text(SL.status))
                              .join(IL, IL.id == InvoiceLineSLCL.invoice_line_id).join(I, I.id == IL.invoice_id)
                              .outerjoin(SL, SL.id == InvoiceLineSLCL.slcl_id).where(I.contract_id.in_(ids))).all()

    def add(self, *args: Any, **kw: Any) -> None:
        self.report.differences.append(Difference(*args, **kw))

    # ----------------------------------------------------------------------------------------

    def audit(self) -> None:
        linked_lcls = {l.lcl_id for l in self.lcl_links}
        linked_slcls = {l.slcl_id for l in self.slcl_links}
        # A billed-ahead scheduled change withdrawn since (cancelled, failed to merge) is owed back.
        self.dead_lines = {l.invoice_line_id for l in self.slcl_links if l.status in ("cancelled", "merge_failed")}
        links: dict[int, int] = Counter(l.invoice_line_id for l in self.lcl_links) + Counter(l.invoice_line_id for l in self.slcl_links)

        by_contract = {c.id: c for c in self.contracts}
        units = self.ref.units
        self.periods = {c.id: billed_periods(c.start_date, m, c.billed_from, c.next_invoice_date) if (m := units.get(c.frequency)) else []
                        for c in self.contracts}
        self.period_starts = {cid: {p[0] for p in periods} for cid, periods in self.periods.items()}
        number_of = {c.id: c.number for c in self.contracts}
        timelines = self._timelines(linked_lcls, linked_slcls, number_of)
        subs_of: dict[int, list[Any]] = defaultdict(list)
        for s in self.subs:
            subs_of[s.contract_id].append(s)
        lines_of: dict[int, list[Any]] = defaultdict(list)
        for ln in self.lines:
            lines_of[ln.invoice_id].append(ln)
        wrong_links: dict[int, list[str]] = defaultdict(list)
        line_sub = {ln.id: ln.subscription_id for ln in self.lines}
        for l in self.lcl_links:
            if l.subscription_id != line_sub[l.invoice_line_id]:
                wrong_links[l.invoice_line_id].append(f"LCL #{l.lcl_id} of subscription #{l.subscription_id}")
        for l in self.slcl_links:
            if l.subscription_id != line_sub[l.invoice_line_id]:
                wrong_links[l.invoice_line_id].append(f"SLCL #{l.slcl_id} of subscription #{l.subscription_id}")

        licence_lines: dict[int, list[_Line]] = defaultdict(list)  # per contract
        self.by_id = {inv.id: inv for inv in self.invoices}
        for inv in self.invoices:
            c = by_contract[inv.contract_id]
            self.report.invoices_checked += 1
            self._invoice(c, inv, lines_of[inv.id])
            for ln in lines_of[inv.id]:
                self.report.lines_checked += 1
                self._line(c, inv, ln, links.get(ln.id, 0), wrong_links.get(ln.id, []))
                if ln.subscription_id is not None and ln.kind in ("recurring", "adjustment"):
                    licence_lines[c.id].append(_Line(ln.id, inv.number, ln.line_no, ln.subscription_id, ln.kind, ln.period_from,
                                                     ln.period_to + ONE_DAY, ln.quantity, ln.unit_price, ln.amount, ln.billing_period_from))
        for c in self.contracts:
            self._days(c, subs_of[c.id], timelines, licence_lines[c.id])

    def _timelines(self, linked_lcls: set[int], linked_slcls: set[int], number_of: dict[int, str]) -> dict[int, _Timeline]:
        """Each subscription's timeline; names every stored bill-from day S6 does not give."""
        contract_of = {s.id: s.contract_id for s in self.subs}
        changes: dict[int, list[_Change]] = defaultdict(list)
        firsts: dict[int, tuple[dict[str, Any], _Change]] = {}
        for l in self.lcls:
            before = (l.quantity_before, l.selling_price_before, l.sales_unit_before, l.status_before)
            after = (l.quantity_after, l.selling_price_after, l.sales_unit_after, l.status_after)
            if l.slcl_id is not None:
                # A merged scheduled change bills from the day its schedule said (00:05 on D for
                # what raised the quantity when scheduled, 23:30 on D for what lowered it, the
                # new term's first day On Renewal), as it was billed ahead (C11, C12).
                day = _scheduled_bill_from(l.effective_date, l.slcl_direction, l.change_effective)
            else:
                day = bill_from_day(l.effective_date, before[::3], after[::3])
            if day != l.bill_from:
                self.add("bill_from", number_of[contract_of[l.subscription_id]], f"{day} (LCL #{l.id})", str(l.bill_from),
                         subscription=l.subscription_id, first_day=l.effective_date)
            cancels = after[3] == "deactivated" and before[3] != "deactivated"
            ch = _Change(day, (0, l.id), {k: a for k, b, a in zip(FIELDS, before, after) if b != a},
                         l.id in linked_lcls or (l.slcl_id is not None and l.slcl_id in linked_slcls), cancels and not l.apply_refund)
            changes[l.subscription_id].append(ch)
            if l.subscription_id not in firsts:
                firsts[l.subscription_id] = (dict(zip(FIELDS, after)), ch)
        for s in self.slcls:
            if s.subscription_id not in firsts:
                continue  # no ledger at all: the day check reports the days
            action = s.action
            # SPEC C12: the fields with a new value take it; activate/deactivate/suspend set the status.
            sets = {k: v for k, v in (("quantity", s.quantity), ("price", s.selling_price), ("unit", s.sales_unit)) if v is not None}
            if action in _STATUS_OF_ACTION:
                sets["status"] = _STATUS_OF_ACTION[action]
            # Its direction was decided when it was scheduled (against the subscription then).
            day = _scheduled_bill_from(s.effective_date, s.direction, s.change_effective)
            if day != s.bill_from:
                self.add("bill_from", number_of[contract_of[s.subscription_id]], f"{day} (SLCL #{s.id})", str(s.bill_from),
                         subscription=s.subscription_id, first_day=s.effective_date)
            changes[s.subscription_id].append(_Change(day, (1, s.id), sets, s.id in linked_slcls, action == "deactivate" and not s.apply_refund))
        return {sid: _Timeline(first, changes[sid], first_change) for sid, (first, first_change) in firsts.items()}

    def _invoice(self, c: Any, inv: Any, lines: list[Any]) -> None:
        check_document(inv, lines, self.by_id, lambda check, expected, found: self.add(check, c.number, expected, found, invoice=inv.number),
                       self.ref.credit_notes_from)
        if inv.currency != c.currency:
            self.add("currency", c.number, c.currency, inv.currency, invoice=inv.number)
        if inv.customer_id != c.customer_id:
            self.add("customer", c.number, f"customer #{c.customer_id}", f"customer #{inv.customer_id}", invoice=inv.number)
        if inv.number != expected_number(inv, (self.ref.prefix, self.ref.credit_prefix)):
            self.add("numbering", c.number, expected_number(inv, (self.ref.prefix, self.ref.credit_prefix)), inv.number, invoice=inv.number)

    def _line(self, c: Any, inv: Any, ln: Any, links: int, wrong_links: list[str]) -> None:
        kind, days, period_days = ln.kind, ln.days, ln.period_days

        def add(check: str, expected: str, found: str) -> None:
            self.add(check, c.number, expected, found, invoice=inv.number, line=ln.line_no, subscription=ln.subscription_id,
                     first_day=ln.period_from, last_day=ln.period_to)

        if days != (ln.period_to - ln.period_from).days + 1:
            add("line_days", f"days {(ln.period_to - ln.period_from).days + 1}", f"days {days}")
        places = ISO_4217_MINOR_UNITS.get(inv.currency)
        if self.ref.taxes is not None:
            check_line(self.ref.taxes, inv, ln, places, add)
        if places is None:
            add("currency", "an ISO 4217 currency", inv.currency)
        elif period_days > 0 and line_amount(ln.quantity, ln.unit_price, days, period_days, places) != ln.amount:
            add("line_amount", _money(line_amount(ln.quantity, ln.unit_price, days, period_days, places), inv.currency), _money(ln.amount, inv.currency))
        if period_days > 0 and _round_ratio(days, period_days, 10) != ln.proration_factor:
            add("proration", str(_round_ratio(days, period_days, 10)), str(ln.proration_factor))
        if kind == "usage" and period_days != days:
            add("line_days", f"period_days {days}", f"period_days {period_days}")
        if kind == "one_time" and (days, period_days) != (1, 1):
            add("line_days", "days 1, period_days 1", f"days {days}, period_days {period_days}")
        if kind not in ("recurring", "adjustment"):
            return
        first, last = ln.billing_period_from, ln.billing_period_to
        if period_days != (last - first).days + 1:
            add("line_days", f"period_days {(last - first).days + 1}", f"period_days {period_days}")
        months = self.ref.units.get(c.frequency)
        if months:
            start, end = period_of(c.start_date, months, first)
            if (start, end - ONE_DAY) != (first, last):
                add("period", f"a period of the contract calendar ({start}..{end - ONE_DAY})", f"{first}..{last}")
            elif start not in self.period_starts[c.id]:
                add("period", f"a billed period (from {c.billed_from}, next invoice {c.next_invoice_date})", f"{first}..{last}")
        if not first <= ln.period_from <= ln.period_to <= last:
            add("period", f"days within the billing period {first}..{last}", f"{ln.period_from}..{ln.period_to}")
        if ln.subscription_id is not None and not links:
            add("link", "a link to the LCLs or SLCLs it bills", "none")
        for what in wrong_links:
            add("link", f"links to subscription #{ln.subscription_id}'s changes", what)

    # ----------------------------------------------------------------------------------------

    def _days(self, c: Any, subs: list[Any], timelines: dict[int, _Timeline], lines: list[_Line]) -> None:
        """Per subscription-day and per period totals of one contract's billed periods."""
        months = self.ref.units.get(c.frequency)
        if not months:
            if c.billed_from is not None:
                self.add("data", c.number, "a frequency with a period length in the unit mapping", str(c.frequency))
            return
        periods = self.periods[c.id]
        for day, what in ((c.billed_from, "billed from"), (c.next_invoice_date, "next invoice date")):
            if day is not None and period_of(c.start_date, months, day)[0] != day:
                self.add("period", c.number, f"{what} on a period boundary", str(day))
        status, change_billing = c.status, c.change_billing
        settles = f"next full-cycle invoice on {c.next_invoice_date}" if status == "active" and change_billing == "next_cycle" else "change-log invoice"
        service = (c.start_date, None if c.end_date is None or (status == "active" and c.auto_renew) else c.end_date + ONE_DAY)
        by_sub_period: dict[tuple[int | None, date], list[_Line]] = defaultdict(list)
        known = {s.id for s in subs}
        for ln in lines:
            by_sub_period[(ln.subscription, ln.billing_period)].append(ln)
            if ln.subscription not in known:
                self.add("subscription", c.number, f"a subscription of contract {c.number}", f"subscription #{ln.subscription}",
                         invoice=ln.invoice, line=ln.no, subscription=ln.subscription)
        places = ISO_4217_MINOR_UNITS.get(c.currency)
        for s in subs:
            if s.kind != "license":
                continue
            tl = timelines.get(s.id)
            for start, end in periods:
                try:
                    self._period(c, s, tl, (start, end), by_sub_period.get((s.id, start), []), service, settles, places)
                except _DataError as exc:
                    self.add("data", c.number, "a price for every billed day", str(exc), subscription=s.id, first_day=start, last_day=end - ONE_DAY)

    def _period(self, c: Any, s: Any, tl: _Timeline | None, period: tuple[date, date], lines: list[_Line],
                service: tuple[date, date | None], settles: str, places: int | None) -> None:
        start, end = period
        period_days = (end - start).days
        cuts = {start, end}
        cuts.update(d for d in (tl.days if tl else ()) if start < d < end)
        cuts.update(d for ln in lines for d in (ln.start, ln.end) if start < d < end)
        cuts.update(d for d in service if d is not None and start < d < end)
        cuts_sorted = sorted(cuts)
        runs: list[list[Any]] = []  # [values, days]: the period's ideal lines
        diffs: list[list[Any]] = []  # [first, last, expected, found, settled_by]
        prices: dict[tuple[Decimal, str], Decimal] = {}
        for a, b in zip(cuts_sorted, cuts_sorted[1:]):
            self.report.days_checked += (b - a).days
            state = tl.on(a) if tl else None
            covering = [ln for ln in lines if ln.start <= a < ln.end]
            found: dict[Decimal, Decimal] = defaultdict(Decimal)
            for ln in covering:
                found[ln.unit_price] += ln.quantity
            found = {p: q for p, q in found.items() if q != 0}
            in_service = a >= service[0] and (service[1] is None or a < service[1])
            expected: dict[Decimal, Decimal] = {}
            if in_service and state is not None:
                if state.no_refund and found:
                    expected = found  # SPEC C4: the days already billed stay billed
                elif state.status == "active" and state.quantity:
                    key = (state.price, state.unit)
                    if key not in prices:
                        prices[key] = self._price(c, s, state.price, state.unit, start)
                    expected = {prices[key]: Decimal(state.quantity)}
            if runs and runs[-1][0] == expected and expected:
                runs[-1][1] += (b - a).days
            else:
                runs.append([expected, (b - a).days])
            if expected == found:
                continue
            pending = not in_service or (state is not None and state.unbilled) or any(ln.id in self.dead_lines for ln in covering)
            settled = settles if pending else None
            exp, got = _billed_text(expected), _billed_text(found)
            if diffs and diffs[-1][1] == a - ONE_DAY and diffs[-1][2:] == [exp, got, settled]:
                diffs[-1][1] = b - ONE_DAY
            else:
                diffs.append([a, b - ONE_DAY, exp, got, settled])
        for first, last, exp, got, settled in diffs:
            self.add("day", c.number, exp, got, subscription=s.id, first_day=first, last_day=last, settled_by=settled)
        if diffs or places is None:
            return
        ideal = sum((line_amount(q, p, days, period_days, places) for values, days in runs for p, q in values.items()), Decimal(0))
        billed = sum((ln.amount for ln in lines), Decimal(0))
        if ideal != billed:
            self.add("period_total", c.number, _money(ideal, c.currency), _money(billed, c.currency), subscription=s.id,
                     first_day=start, last_day=end - ONE_DAY)

    def _price(self, c: Any, s: Any, selling: Decimal, unit: str, period_start: date) -> Decimal:
        """SPEC B5, S1: price per sales unit -> per contract period, in the contract's currency."""
        unit_months = self.ref.units.get(unit)
        if not unit_months:
            raise _DataError(f"sales unit {unit!r} has no period length in the unit mapping")
        value = Fraction(selling) * self.ref.units[c.frequency] / unit_months  # type: ignore[operator]
        if s.currency != c.currency:
            value *= Fraction(self.ref.rate(s.currency, c.currency, period_start))
        return round_half_up(value, PRICE_PLACES)
