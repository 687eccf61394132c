"""The ledger check behind ``w365 verify ledger`` (SPEC S3): every subscription equals the fold
of its LCLs, and each LCL's "before" equals the previous one's "after".

``w365 verify billing`` is the independent auditor in ``w365.operations.audit``, which shares no code with
the billing engine.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from w365.store.models import LicenseChangeLog, Subscription
from w365.core.ledger import Change, Drift, change_of, check_chain, state_of


def verify_ledger(session: Session, subscription_ids: Iterable[int] | None = None) -> tuple[int, list[Drift]]:
    q = select(Subscription).execution_options(populate_existing=True)  # read the rows, not a cache
    if subscription_ids is not None:
        q = q.where(Subscription.id.in_(list(subscription_ids)))
    subs = {s.id: state_of(s) for s in session.scalars(q)}
    changes: dict[int, list[Change]] = defaultdict(list)
    lq = select(LicenseChangeLog)
    if subscription_ids is not None:
        lq = lq.where(LicenseChangeLog.subscription_id.in_(list(subs)))
    for lcl in session.scalars(lq):
        changes[lcl.subscription_id].append(change_of(lcl))
    drifts: list[Drift] = []
    for sid, current in subs.items():
        drifts += check_chain(sid, current, changes.get(sid, []))
    return len(subs), drifts
