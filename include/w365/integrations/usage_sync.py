"""Azure usage from the providers: the daily (interim) and final sync jobs.

Loading a day (``load_usage``), set-based with pandas, one transaction per provider and day:

1. The provider's line items arrive as a DataFrame of strings (``w365.integrations.providers.base``).
2. Each line is checked, vectorised: its subscription is one of this provider's usage
   subscriptions (by ``provider_subscription_id``) and, when the line names a customer, that
   subscription's customer; the usage date is the day being synced; quantity, unit price and
   pre-tax total are decimal text within the column's places; the currency is an ISO 4217 code
   w365 knows. Bad lines are reported (``job_exception``, one row per provider subscription with
   the count and the first reason); a subscription with any bad line is *held back* for the day:
   none of its lines load and its rows already stored for the day stay, so a partial day is never
   billed and nothing is lost.
3. Lines of one subscription and meter on the day are summed into one row (the store keeps one
   row per kind, subscription, day and meter); the unit price is the first line's.
4. The day is replaced, never duplicated: that day's rows of that kind for the provider's
   subscriptions (except the held-back ones) are deleted and the new rows inserted, in one
   transaction. PostgreSQL: ``COPY ... FROM STDIN`` of a CSV the DataFrame writes (psycopg2
   ``copy_expert``); SQLite: ``executemany``.

Money never becomes float: amounts are validated and passed as decimal text, and sums are
``Decimal`` (SPEC M1).

On the first day of a month the final sync also bills the month before (``w365.billing.usage``).
"""

from __future__ import annotations

import decimal
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, Iterable, cast

from sqlalchemy import CursorResult, Engine, and_, delete, select
from sqlalchemy.orm import Session

from w365.core import limits
from w365.core.calendar import add_months
from w365.store.models import (
    Customer,
    Product,
    ProductKind,
    Provider,
    ProviderKind,
    Subscription,
    UsageKind,
    UsageRecord,
)
from w365.store.bulk import copy_columns
from w365.store.session import get_engine, is_postgres, session_scope
from w365.errors import W365Error
from w365.store.job_report import record_exceptions
from w365.core.money import MINOR_UNITS
from w365.billing.usage import job_for, month_start, bill_usage_month

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

COLUMNS = (
    "kind", "subscription_id", "customer_id", "usage_date", "meter_id", "meter_name", "unit", "quantity",
    "unit_price", "pre_tax_total", "currency", "synced_at",
)
# Decimal text: sign, integer digits (precision - scale), at most ``scale`` places (trailing zeros
# beyond are harmless); blanks around it are allowed (PostgreSQL and Decimal both accept them).
# The bounds are w365.core.limits.USAGE_NUMBERS (issue 12).
_NUMBER = {column: limits.usage_number_pattern(column) for column in limits.USAGE_NUMBERS}
_SUM_CONTEXT = decimal.Context(prec=40)


# --------------------------------------------------------------------------------------------
# Loading a day


@dataclass
class UsageLoadResult:
    provider: str
    kind: str
    day: str
    lines: int = 0
    rows_loaded: int = 0
    rows_replaced: int = 0
    subscriptions: int = 0
    held_back: dict[str, str] = field(default_factory=dict)  # provider subscription id -> reason
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _SubInfo:
    id: int
    customer_id: int
    tenant_id: str | None
    is_usage: bool


def provider_usage_subscriptions(session: Session, provider_id: int) -> dict[str, _SubInfo]:
    """provider_subscription_id -> the provider's subscription (with its customer's tenant id)."""
    rows = session.execute(
        select(Subscription.provider_subscription_id, Subscription.id, Subscription.customer_id, Customer.provider_tenant_id, Product.kind)
        .join(Customer, Customer.id == Subscription.customer_id)
        .join(Product, Product.id == Subscription.product_id)
        .where(Subscription.provider_id == provider_id, Subscription.provider_subscription_id.is_not(None))
    )
    return {
        psid: _SubInfo(sid, cid, tenant, kind == ProductKind.USAGE.value)
        for psid, sid, cid, tenant, kind in rows if psid is not None
    }


def _mark(reason: "pd.Series", bad: "pd.Series", text: str) -> "pd.Series":
    return reason.mask(reason.isna() & bad.fillna(True).astype(bool), text)


def _objects(series: "pd.Series") -> "pd.Series":
    """A column as Python objects with None for missing (one conversion, then plain str ops)."""
    out = series.astype(object)
    return out.where(out.notna(), None)


def check_lines(frame: "pd.DataFrame", day: date, subs: dict[str, _SubInfo]) -> tuple["pd.DataFrame", "pd.Series"]:
    """Map lines to subscriptions and give each bad line its reason (vectorised)."""
    import pandas as pd

    f = pd.DataFrame({c: _objects(frame[c]).reset_index(drop=True) for c in frame.columns})
    psid = f["subscription"]
    sid = psid.map({k: v.id for k, v in subs.items()})
    usage_sub = psid.map({k: v.is_usage for k, v in subs.items()})
    owner = psid.map({k: v.tenant_id for k, v in subs.items()})
    reason = pd.Series([None] * len(f), dtype=object)
    reason = _mark(reason, sid.isna(), "unknown subscription: no subscription of this provider has this provider_subscription_id")
    reason = _mark(reason, usage_sub.eq(False), "not a usage subscription (its product is not kind usage)")
    cust = f["customer"]
    reason = _mark(reason, cust.notna() & owner.notna() & (cust != owner), "the line's customer does not own the subscription")
    iso = day.isoformat()
    dates = f["usage_date"]
    wrong_day = dates != iso
    if wrong_day.any():  # also accept an instant on that day (2026-01-14T00:00:00Z)
        wrong_day &= ~dates[wrong_day].str.startswith(iso + "T").fillna(False).reindex(dates.index, fill_value=True)
    reason = _mark(reason, wrong_day, f"usage date is not {iso}, the day being synced")
    meter = f["meter_id"].str.strip()
    reason = _mark(reason, meter.isna() | (meter == "") | (meter.str.len() > 64), "no meter id (or longer than 64 characters)")
    for col, pattern in _NUMBER.items():
        reason = _mark(reason, ~f[col].str.fullmatch(pattern).fillna(False).astype(bool), f"{col} is not a decimal number within the stored precision")
    cur = f["currency"]
    known = cur.isin(list(MINOR_UNITS))
    if not known.all():  # lower case or padded codes
        cur = cur.where(known, cur.str.strip().str.upper())
        known = cur.isin(list(MINOR_UNITS))
    reason = _mark(reason, ~known, "currency is not an ISO 4217 code w365 knows")
    f["currency"] = cur
    f["meter_id"] = meter
    f["subscription_id"] = sid
    return f, reason


def _sum_decimal_text(values: Iterable[str]) -> str:
    total = sum((Decimal(v) for v in values), Decimal(0))
    return format(_SUM_CONTEXT.plus(total), "f")


def _fits(values: "pd.Series", integer_digits: int) -> "pd.Series":
    return values.str.lstrip("-").str.split(".").str[0].str.len() <= integer_digits


def aggregate(good: "pd.DataFrame") -> tuple["pd.DataFrame", set[int]]:
    """One row per (subscription, meter): quantities and totals summed exactly (Decimal).
    Also the subscriptions whose sum outgrows the store's precision."""
    import pandas as pd

    keys = ["subscription_id", "meter_id"]
    dup = good.duplicated(keys, keep=False)
    if not dup.any():
        return good, set()
    grouped = good[dup].groupby(keys, sort=False)
    with decimal.localcontext(_SUM_CONTEXT):
        summed = grouped.agg(
            customer_id=("customer_id", "first"), meter_name=("meter_name", "first"), unit=("unit", "first"),
            quantity=("quantity", _sum_decimal_text), unit_price=("unit_price", "first"),
            pre_tax_total=("pre_tax_total", _sum_decimal_text), currency=("currency", "first"),
        ).reset_index()
    too_big = ~(_fits(summed["quantity"], limits.USAGE_NUMBERS["quantity"][0])
                & _fits(summed["pre_tax_total"], limits.USAGE_NUMBERS["pre_tax_total"][0]))
    overflow = {int(x) for x in summed.loc[too_big, "subscription_id"].unique()}
    return pd.concat([good[~dup], summed[good.columns]], ignore_index=True), overflow


def _clip(series: "pd.Series", width: int) -> "pd.Series":
    long = series.str.len() > width
    return series.where(~long.fillna(False).astype(bool), series.str.slice(0, width)) if long.any() else series


def prepare(frame: "pd.DataFrame", *, kind: str, day: date, subs: dict[str, _SubInfo]) -> tuple["pd.DataFrame", dict[str, str], set[int]]:
    """Checked, aggregated rows ready to insert (``COLUMNS`` without ``synced_at``); the
    held-back subscriptions and why."""
    import pandas as pd

    f, reason = check_lines(frame, day, subs)
    bad = reason.notna()
    problems: dict[str, str] = {}
    held: set[int] = set()
    inverse = {v.id: k for k, v in subs.items()}
    if bad.any():
        keyed = pd.DataFrame({
            "key": f["subscription"].where(f["subscription"].notna(), "(no subscription id)").astype(str),
            "reason": reason, "line": pd.Series(range(1, len(f) + 1)), "sid": f["subscription_id"],
        })[bad]
        for key, grp in keyed.groupby("key", sort=True):
            first = grp.iloc[0]
            problems[str(key)] = f"{len(grp)} line(s) rejected, e.g. line {int(first['line'])}: {first['reason']}"
        held = {int(s) for s in keyed["sid"].dropna().unique()}
        good = f[~bad & ~f["subscription_id"].isin(held)]
    else:
        good = f
    # One currency per subscription and day.
    currencies = good.groupby("subscription_id")["currency"].nunique()
    mixed = {int(s) for s in currencies[currencies > 1].index}
    for s in mixed:
        problems[inverse[s]] = "lines in more than one currency on the same day"
    sub_customer = {v.id: v.customer_id for v in subs.values()}
    sids = good["subscription_id"].astype("int64")
    good = pd.DataFrame({
        "subscription_id": sids, "customer_id": sids.map(sub_customer).astype("int64"), "meter_id": good["meter_id"],
        "meter_name": _clip(good["meter_name"], 200), "unit": _clip(good["unit"], 50), "quantity": good["quantity"],
        "unit_price": good["unit_price"], "pre_tax_total": good["pre_tax_total"], "currency": good["currency"],
    })
    if mixed:
        good = good[~good["subscription_id"].isin(mixed)]
        held |= mixed
    rows, overflow = aggregate(good)
    # A sum can outgrow its column: hold that subscription rather than fail the day.
    for s in overflow:
        problems[inverse[s]] = "the day's sum of a meter is larger than the store's precision"
    if overflow:
        held |= overflow
        rows = rows[~rows["subscription_id"].isin(overflow)]
    # In key order: the unique index and the foreign-key checks then touch pages in sequence.
    rows = rows.sort_values(["subscription_id", "meter_id"], kind="stable").assign(kind=kind, usage_date=day.isoformat())
    return rows[[c for c in COLUMNS if c != "synced_at"]], problems, held


_TEXT_SPECIAL = r"[\\\t\n\r]"


def _copy_text_column(series: "pd.Series") -> list[str]:
    """One column in COPY's text format: NULL as \\N, backslash, tab and newlines escaped."""
    import pandas as pd

    if pd.api.types.is_integer_dtype(series.dtype):
        return series.astype(str).tolist()
    series = series.astype(object)
    if series.str.contains(_TEXT_SPECIAL, regex=True).fillna(False).any():
        series = (series.str.replace("\\", "\\\\", regex=False).str.replace("\t", "\\t", regex=False)
                  .str.replace("\n", "\\n", regex=False).str.replace("\r", "\\r", regex=False))
    return series.where(series.notna(), "\\N").tolist()


def copy_cells(rows: "pd.DataFrame", synced_at: datetime) -> list[list[str]]:
    """The rows as COPY text, column by column (vectorised: about three times faster than a CSV)."""
    cols = [_copy_text_column(rows[c]) for c in COLUMNS if c != "synced_at"]
    cols.append([synced_at.isoformat()] * len(rows))
    return cols


def _copy_postgres(session: Session, rows: "pd.DataFrame", synced_at: datetime) -> None:
    copy_columns(session, "usage_record", COLUMNS, copy_cells(rows, synced_at))


def _insert_sqlite(session: Session, rows: "pd.DataFrame", synced_at: datetime) -> None:
    # Decimal text as ExactDecimal stores it on SQLite; instants as naive UTC (UTCDateTime).
    stamp = synced_at.astimezone(timezone.utc).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    out = rows.assign(synced_at=stamp, **{c: rows[c].str.strip() for c in _NUMBER})
    params = list(out.itertuples(index=False, name=None))
    placeholders = ", ".join("?" for _ in COLUMNS)
    session.connection().exec_driver_sql(f"INSERT INTO usage_record ({', '.join(COLUMNS)}) VALUES ({placeholders})", params)


def load_usage(
    session: Session, provider_id: int, kind: str, day: date, frame: "pd.DataFrame", *, now: datetime, provider_name: str = ""
) -> UsageLoadResult:
    """Replace one provider's usage of ``kind`` for ``day`` with ``frame`` (see the module doc).
    In the caller's transaction."""
    started = time.monotonic()
    kind = UsageKind(kind).value
    result = UsageLoadResult(provider_name or str(provider_id), kind, day.isoformat(), lines=len(frame))
    subs = provider_usage_subscriptions(session, provider_id)
    rows, problems, held = prepare(frame, kind=kind, day=day, subs=subs)
    result.held_back = problems
    checked = time.monotonic()
    log.info("usage %s %s: %d line(s) checked in %.1fs -> %d row(s); %d subscription(s) held back",
             kind, day, len(frame), checked - started, len(rows), len(problems))
    provider_subs = select(Subscription.id).where(Subscription.provider_id == provider_id)
    cond = and_(UsageRecord.kind == kind, UsageRecord.usage_date == day, UsageRecord.subscription_id.in_(provider_subs))
    if held:
        cond = and_(cond, UsageRecord.subscription_id.not_in(sorted(held)))
    result.rows_replaced = cast("CursorResult[Any]", session.execute(delete(UsageRecord).where(cond))).rowcount or 0
    deleted = time.monotonic()
    if len(rows):
        if is_postgres(session):
            _copy_postgres(session, rows, now)
        else:
            _insert_sqlite(session, rows, now)
    log.info("usage %s %s: %d old row(s) deleted in %.1fs, %d row(s) inserted in %.1fs",
             kind, day, result.rows_replaced, deleted - checked, len(rows), time.monotonic() - deleted)
    result.rows_loaded = len(rows)
    result.subscriptions = int(rows["subscription_id"].nunique()) if len(rows) else 0
    result.seconds = round(time.monotonic() - started, 3)
    return result


# --------------------------------------------------------------------------------------------
# The sync jobs


def _api_providers(session: Session) -> list[tuple[int, str, str, str | None]]:
    return [
        (p.id, p.name, p.kind, p.connection_id)
        for p in session.scalars(select(Provider).where(Provider.kind != ProviderKind.MANUAL).order_by(Provider.id))
    ]


class _ProviderRow:
    def __init__(self, pid: int, name: str, kind: str, connection_id: str | None):
        self.id, self.name, self.kind, self.connection_id = pid, name, kind, connection_id


def sync_usage(
    kind: str,
    day: date,
    *,
    as_of: date,
    now: datetime,
    client_factory: Callable[[Any], Any] | None = None,
    engine: Engine | None = None,
) -> dict[str, Any]:
    """Load ``day``'s usage of ``kind`` from every provider with an API or file drop."""
    from w365.integrations.providers import ProviderUnavailable, client_for

    engine = engine or get_engine()
    factory = client_factory or client_for
    job = job_for(kind)
    report: dict[str, Any] = {"job": job, "as_of": as_of.isoformat(), "day": day.isoformat(), "kind": kind, "providers": [],
                              "problems": {}, "failed_providers": {}}
    with session_scope(engine) as s:
        providers = _api_providers(s)
    for pid, name, pkind, conn_id in providers:
        entry: dict[str, Any] = {"provider": name, "kind": pkind}
        try:
            with factory(_ProviderRow(pid, name, pkind, conn_id)) as client:
                frame = client.usage(day, kind)
        except (ProviderUnavailable, W365Error) as exc:
            log.error("%s: provider %s: %s", job, name, exc)
            report["failed_providers"][name] = str(exc)
            with session_scope(engine) as s:
                record_exceptions(s, job, as_of, "provider", {name: str(exc)})
            continue
        if frame is None:
            entry["status"] = "no usage available for the day"
            report["providers"].append(entry)
            continue
        with session_scope(engine) as s:
            res = load_usage(s, pid, kind, day, frame, now=now, provider_name=name)
            record_exceptions(s, job, as_of, "usage_subscription", {f"{name}:{day}:{k}": v for k, v in res.held_back.items()})
            record_exceptions(s, job, as_of, "provider", {}, cleared=[name])
        entry.update(res.to_dict())
        report["providers"].append(entry)
        report["problems"].update({f"{name}:{k}": v for k, v in res.held_back.items()})
    return report


def sync_final_usage(
    as_of: date, *, day: date | None = None, bill_month: date | None = None, now: datetime, bill: bool = True,
    client_factory: Callable[[Any], Any] | None = None, engine: Engine | None = None,
) -> dict[str, Any]:
    """The final-usage job: load yesterday's final usage, then, on the first day of a month (or for
    ``bill_month``), invoice the month before."""
    day = day or as_of - timedelta(days=1)
    report = sync_usage(UsageKind.FINAL.value, day, as_of=as_of, now=now, client_factory=client_factory, engine=engine)
    month = bill_month or (add_months(month_start(as_of), -1) if as_of.day == 1 else None)
    if bill and month is not None:
        report["billing"] = bill_usage_month(month_start(month), as_of=as_of, engine=engine)
    return report


# --------------------------------------------------------------------------------------------
