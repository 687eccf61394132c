"""Loading one provider's usage day: checked, summed and replaced in one transaction, streamed.

A day arrives as DataFrames of strings (``w365.integrations.providers.base``), one or many: a file
drop is read in chunks of ``USAGE_BATCH_LINES`` lines, so memory stays flat in the day's size
(issue 15: a million lines in a few hundred MB, not gigabytes).

1. Each chunk is checked, vectorised (``check_lines``): its subscription is one of this provider's
   usage subscriptions (by ``provider_subscription_id``) and, when the line names a customer, that
   subscription's customer; the usage date is the day being synced; quantity, unit price and
   pre-tax total are decimal text within the column's places; the currency is an ISO 4217 code
   w365 knows. Bad lines are reported (``job_exception``, one row per provider subscription with
   the count and the first reason, counted over the whole day); a subscription with any bad line
   is *held back* for the day: none of its lines load and its rows already stored for the day
   stay, so a partial day is never billed and nothing is lost. The good lines of a chunk are kept
   compact (repeated texts shared, not copied) until the day is read: whether a subscription is
   held back, or a meter repeats in a later chunk, is known only at the end.
2. Lines of one subscription and meter on the day are summed into one row, across chunks (the
   store keeps one row per kind, subscription, day and meter); the unit price is the first line's.
3. The day is replaced, never duplicated: that day's rows of that kind for the provider's
   subscriptions (except the held-back ones) are deleted and the new rows inserted, in the
   caller's transaction. PostgreSQL: one ``COPY ... FROM STDIN`` fed block by block
   (``store.bulk.copy_blocks``), the next block formatted while the server stores the last;
   SQLite: ``executemany`` per block.

Money never becomes float: amounts are validated and passed as decimal text, and sums are exact
integers of the column's smallest unit (10^-6, 10^-4) turned back into decimal text (SPEC M1; a
float64 copy only tells whether a sum could leave int64's range).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any, Iterable, Iterator, cast

from sqlalchemy import CursorResult, and_, delete, select
from sqlalchemy.orm import Session

from w365.core import limits
from w365.core.money import MINOR_UNITS
from w365.store.bulk import COPY_ESCAPES, NULL, copy_blocks
from w365.store.models import Customer, Product, ProductKind, Subscription, UsageKind, UsageRecord
from w365.store.session import is_postgres

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

COLUMNS = (
    "kind", "subscription_id", "customer_id", "usage_date", "meter_id", "meter_name", "unit", "quantity",
    "unit_price", "pre_tax_total", "currency", "synced_at",
)
USAGE_BATCH_LINES = 100_000  # lines read and checked at once
WRITE_BLOCK_ROWS = 20_000  # rows formatted and written at once (a COPY block, an executemany)
# Decimal text: sign, integer digits (precision - scale), at most ``scale`` places (trailing zeros
# beyond are harmless); blanks around it are allowed (PostgreSQL and Decimal both accept them).
# The bounds are w365.core.limits.USAGE_NUMBERS (issue 12).
_NUMBER = {column: re.compile(limits.usage_number_pattern(column)) for column in limits.USAGE_NUMBERS}
# Columns with few distinct values a day: kept as categories between chunks (shared texts).
_REPEATING = ("meter_id", "meter_name", "unit", "unit_price", "currency")


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
    for col in _NUMBER:
        bad = _bad_numbers(f[col], col)
        if bad is not None:
            reason = _mark(reason, bad, f"{col} is not a decimal number within the stored precision")
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


def _scaled(text: "pd.Series", places: int) -> "np.ndarray[Any, Any]":
    """Checked decimal text (``_NUMBER``) as int64 in units of 10^-places: exact, because the
    columns hold at most 18 digits (``limits.USAGE_NUMBERS``: 12 + 6 and 14 + 4). Places beyond
    ``places`` are zeros (the pattern allows only trailing zeros there)."""
    import numpy as np

    pad = "0" * places

    def one(value: str) -> int:
        value = value.strip()
        whole, _, fraction = value.lstrip("+-").partition(".")
        number = int(whole + (fraction + pad)[:places])
        return -number if value.startswith("-") else number

    return np.array([one(v) for v in text.tolist()], dtype="int64")


def _bad_numbers(series: "pd.Series", column: str) -> "pd.Series | None":
    """Which values are not decimal text within ``column``'s digits and places; None when all
    are. A plain loop over the pattern: pandas' ``.str.fullmatch`` costs ~3x more per value."""
    import pandas as pd

    match = _NUMBER[column].fullmatch
    bad = [not (type(v) is str and match(v)) for v in series.tolist()]
    return pd.Series(bad, index=series.index) if any(bad) else None


def _sum_scaled(values: "np.ndarray[Any, Any]", starts: "np.ndarray[Any, Any]", places: int, digits: int) -> tuple[list[str], "np.ndarray[Any, Any]"]:
    """Sums of runs (``starts``) of scaled values, as decimal text, and which sums do not fit
    ``digits`` integer digits. int64 addition wraps, so a sum that fits int64 is exact however
    its partial sums ran; a float64 sum of the same run tells which could not fit."""
    import numpy as np

    sums = np.add.reduceat(values, starts)
    rough = np.add.reduceat(values.astype("float64"), starts)
    limit = 10 ** (digits + places)
    too_big = (np.abs(rough) >= 9.0e18) | (np.abs(sums) >= limit)
    unit = 10**places
    magnitude = np.abs(sums)
    text = [f"{'-' if v < 0 else ''}{m // unit}.{m % unit:0{places}d}" for v, m in zip(sums.tolist(), magnitude.tolist())]
    return text, too_big


def aggregate(good: "pd.DataFrame") -> tuple["pd.DataFrame", set[int]]:
    """One row per (subscription, meter): quantities and totals summed exactly (as integers of
    the column's smallest unit). Also the subscriptions whose sum outgrows the store's precision."""
    import numpy as np
    import pandas as pd

    keys = ["subscription_id", "meter_id"]
    dup = good.duplicated(keys, keep=False)
    if not dup.any():
        return good, set()
    repeated = good[dup]
    group = repeated.groupby(keys, sort=False).ngroup().to_numpy()
    order = np.argsort(group, kind="stable")  # a group's lines together, in file order
    repeated = repeated.iloc[order]
    starts = np.flatnonzero(np.r_[True, np.diff(group[order]) != 0])
    summed = repeated.iloc[starts][list(good.columns)].reset_index(drop=True)  # the first line's values
    too_big = np.zeros(len(starts), dtype=bool)
    for column in ("quantity", "pre_tax_total"):
        digits, places = limits.USAGE_NUMBERS[column]
        text, over = _sum_scaled(_scaled(repeated[column], places), starts, places, digits)
        summed[column] = text
        too_big |= over
    overflow = {int(x) for x in summed.loc[too_big, "subscription_id"].unique()}
    return pd.concat([good[~dup], summed], ignore_index=True), overflow


def _clip(series: "pd.Series", width: int) -> "pd.Series":
    long = series.str.len() > width
    return series.where(~long.fillna(False).astype(bool), series.str.slice(0, width)) if long.any() else series


class UsageDay:
    """One provider's usage day, fed chunk by chunk (``add``); ``rows`` gives what to store."""

    def __init__(self, day: date, subs: dict[str, _SubInfo]):
        self.day, self.subs = day, subs
        self.lines = 0
        self._good: list["pd.DataFrame"] = []
        self._held: set[int] = set()
        # provider subscription id (as the file names it) -> [bad lines, first line, first reason]
        self._bad: dict[str, list[Any]] = {}

    def add(self, frame: "pd.DataFrame") -> None:
        import pandas as pd

        f, reason = check_lines(frame, self.day, self.subs)
        bad = reason.notna()
        if bad.any():
            keyed = pd.DataFrame({
                "key": f["subscription"].where(f["subscription"].notna(), "(no subscription id)").astype(str),
                "reason": reason, "line": pd.Series(range(self.lines + 1, self.lines + len(f) + 1)),
            })[bad]
            for key, grp in keyed.groupby("key", sort=False):
                first = self._bad.setdefault(str(key), [0, int(grp["line"].iloc[0]), grp["reason"].iloc[0]])
                first[0] += len(grp)
            self._held |= {int(s) for s in f.loc[bad, "subscription_id"].dropna().unique()}
            f = f[~bad]
        self.lines += len(frame)
        sids = f["subscription_id"].astype("int64")
        self._good.append(pd.DataFrame({
            "subscription_id": sids.to_numpy(), "meter_id": f["meter_id"].to_numpy(),
            "meter_name": _clip(f["meter_name"], 200).to_numpy(), "unit": _clip(f["unit"], 50).to_numpy(),
            "quantity": f["quantity"].to_numpy(), "unit_price": f["unit_price"].to_numpy(),
            "pre_tax_total": f["pre_tax_total"].to_numpy(), "currency": f["currency"].to_numpy(),
        }).astype({c: "category" for c in _REPEATING}))

    def rows(self, kind: str) -> tuple["pd.DataFrame", dict[str, str], set[int]]:
        """Checked, aggregated rows ready to insert (``COLUMNS`` without ``synced_at``), in key
        order; the held-back subscriptions and why."""
        import pandas as pd

        problems = {key: f"{n} line(s) rejected, e.g. line {line}: {reason}" for key, (n, line, reason) in sorted(self._bad.items())}
        held = set(self._held)
        inverse = {v.id: k for k, v in self.subs.items()}
        # Categories of different chunks concatenate to objects that share each distinct text.
        good = pd.concat(self._good, ignore_index=True) if self._good else pd.DataFrame(
            {c: pd.Series(dtype="int64" if c == "subscription_id" else object) for c in ("subscription_id", "meter_id", "meter_name", "unit", "quantity", "unit_price", "pre_tax_total", "currency")})
        self._good = []
        good = good.astype({c: object for c in _REPEATING})
        if held:
            good = good[~good["subscription_id"].isin(held)]
        # One currency per subscription and day.
        currencies = good.groupby("subscription_id")["currency"].nunique()
        mixed = {int(s) for s in currencies[currencies > 1].index}
        for s in mixed:
            problems[inverse[s]] = "lines in more than one currency on the same day"
        sub_customer = {v.id: v.customer_id for v in self.subs.values()}
        good = good.assign(customer_id=good["subscription_id"].map(sub_customer).astype("int64"))
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
        rows = rows.sort_values(["subscription_id", "meter_id"], kind="stable").assign(kind=kind, usage_date=self.day.isoformat())
        return rows[[c for c in COLUMNS if c != "synced_at"]].reset_index(drop=True), problems, held


def prepare(frame: "pd.DataFrame", *, kind: str, day: date, subs: dict[str, _SubInfo]) -> tuple["pd.DataFrame", dict[str, str], set[int]]:
    """A day given whole: checked, aggregated rows, the held-back subscriptions and why."""
    usage = UsageDay(day, subs)
    usage.add(frame)
    return usage.rows(kind)


_TEXT_SPECIAL = re.compile(r"[\\\t\n\r]")


def _copy_text_column(series: "pd.Series") -> list[str]:
    """One column in COPY's text format: NULL as \\N, backslash, tab and newlines escaped.
    Plain list and string builtins: pandas' ``.str`` methods cost ~10x more per value here."""
    import pandas as pd

    if pd.api.types.is_integer_dtype(series.dtype):
        return series.astype(str).tolist()
    values = series.astype(object).tolist()
    texts_only = all(type(v) is str for v in values)
    if _TEXT_SPECIAL.search("".join(values if texts_only else [v for v in values if type(v) is str])):
        values = [v.translate(COPY_ESCAPES) if type(v) is str else v for v in values]
    return values if texts_only else [v if type(v) is str else NULL for v in values]  # None, NaN: NULL


def copy_cells(rows: "pd.DataFrame", synced_at: datetime) -> list[list[str]]:
    """The rows as COPY text, column by column (vectorised: about three times faster than a CSV)."""
    cols = [_copy_text_column(rows[c]) for c in COLUMNS if c != "synced_at"]
    cols.append([synced_at.isoformat()] * len(rows))
    return cols


def _blocks(rows: "pd.DataFrame") -> Iterator["pd.DataFrame"]:
    for start in range(0, len(rows), WRITE_BLOCK_ROWS):
        yield rows.iloc[start:start + WRITE_BLOCK_ROWS]


def _insert_sqlite(session: Session, rows: "pd.DataFrame", synced_at: datetime) -> None:
    # Decimal text as ExactDecimal stores it on SQLite; instants as naive UTC (UTCDateTime).
    stamp = synced_at.astimezone(timezone.utc).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    placeholders = ", ".join("?" for _ in COLUMNS)
    sql = f"INSERT INTO usage_record ({', '.join(COLUMNS)}) VALUES ({placeholders})"
    for block in _blocks(rows):
        out = block.assign(synced_at=stamp, **{c: block[c].str.strip() for c in _NUMBER})
        session.connection().exec_driver_sql(sql, list(out.itertuples(index=False, name=None)))


def load_usage(
    session: Session, provider_id: int, kind: str, day: date, frames: "pd.DataFrame | Iterable[pd.DataFrame]", *,
    now: datetime, provider_name: str = "",
) -> UsageLoadResult:
    """Replace one provider's usage of ``kind`` for ``day`` with ``frames`` (one DataFrame or
    chunks of one day; see the module doc). In the caller's transaction."""
    import pandas as pd

    started = time.monotonic()
    kind = UsageKind(kind).value
    subs = provider_usage_subscriptions(session, provider_id)
    usage = UsageDay(day, subs)
    for chunk in ([frames] if isinstance(frames, pd.DataFrame) else frames):
        usage.add(chunk)
        if usage.lines >= 5 * USAGE_BATCH_LINES and usage.lines % (5 * USAGE_BATCH_LINES) < len(chunk):
            log.info("usage %s %s: %d line(s) read and checked", kind, day, usage.lines)
    rows, problems, held = usage.rows(kind)
    result = UsageLoadResult(provider_name or str(provider_id), kind, day.isoformat(), lines=usage.lines, held_back=problems)
    checked = time.monotonic()
    log.info("usage %s %s: %d line(s) checked in %.1fs -> %d row(s); %d subscription(s) held back",
             kind, day, usage.lines, checked - started, len(rows), len(problems))
    provider_subs = select(Subscription.id).where(Subscription.provider_id == provider_id)
    cond = and_(UsageRecord.kind == kind, UsageRecord.usage_date == day, UsageRecord.subscription_id.in_(provider_subs))
    if held:
        cond = and_(cond, UsageRecord.subscription_id.not_in(sorted(held)))
    # No session synchronisation: the ORM would fetch every deleted row's id back (RETURNING),
    # a million ids on a re-sync, for objects this session never loaded.
    gone = session.execute(delete(UsageRecord).where(cond).execution_options(synchronize_session=False))
    result.rows_replaced = cast("CursorResult[Any]", gone).rowcount or 0
    deleted = time.monotonic()
    if len(rows):
        if is_postgres(session):
            copy_blocks(session, "usage_record", COLUMNS, (copy_cells(block, now) for block in _blocks(rows)))
        else:
            _insert_sqlite(session, rows, now)
    log.info("usage %s %s: %d old row(s) deleted in %.1fs, %d row(s) inserted in %.1fs",
             kind, day, result.rows_replaced, deleted - checked, len(rows), time.monotonic() - deleted)
    result.rows_loaded = len(rows)
    result.subscriptions = int(rows["subscription_id"].nunique()) if len(rows) else 0
    result.seconds = round(time.monotonic() - started, 3)
    return result
