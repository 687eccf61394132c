"""End-customer portal API (SPEC C13): same validation as operators, own subscriptions only."""

from datetime import date, datetime, timezone

from fastapi.testclient import TestClient
from sqlalchemy import select

import factories as f
from w365.db.models import ChangeSource, ScheduledLicenseChangeLog
from w365.portal import create_app, issue_token

NOW = datetime(2025, 12, 10, 17, 0, tzinfo=timezone.utc)


def _client(store, session):
    f.set_timezone(session, "America/Los_Angeles")
    mine = f.customer(session, "Fabrikam")
    theirs = f.customer(session, "Northwind")
    sub = f.subscription(session, f.contract(session, mine, start=date(2025, 12, 1)), name="Mine")
    other = f.subscription(session, f.contract(session, theirs, start=date(2025, 12, 1)), name="Theirs")
    token = issue_token(session, mine.id)
    session.commit()
    client = TestClient(create_app(clock=lambda: NOW))
    return client, {"Authorization": f"Bearer {token}"}, sub, other


def test_c13_customer_schedules_a_change_with_its_token(store, session):
    client, auth, sub, _ = _client(store, session)
    assert client.get("/subscriptions").status_code == 401
    assert client.get("/subscriptions", headers={"Authorization": "Bearer nope"}).status_code == 401
    listed = client.get("/subscriptions", headers=auth).json()
    assert [s["name"] for s in listed] == ["Mine"]
    r = client.post(f"/subscriptions/{sub.id}/scheduled-changes", headers=auth, json={"quantity": 14, "effective_date": "2025-12-20"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "pending" and body["scheduled_for"].startswith("2025-12-20T08:05")  # 00:05 PST (S6)
    f.fresh(session)
    slcl = session.scalars(select(ScheduledLicenseChangeLog)).one()
    assert slcl.source == ChangeSource.PORTAL and slcl.requested_by.startswith("portal:customer#")
    assert [c["id"] for c in client.get(f"/subscriptions/{sub.id}/scheduled-changes", headers=auth).json()] == [slcl.id]


def test_c13_another_customers_subscription_is_not_found(store, session):
    client, auth, _, other = _client(store, session)
    assert client.get(f"/subscriptions/{other.id}/scheduled-changes", headers=auth).status_code == 404
    r = client.post(f"/subscriptions/{other.id}/scheduled-changes", headers=auth, json={"quantity": 1, "effective_date": "2025-12-20"})
    assert r.status_code == 404
    assert f.fresh(session).scalars(select(ScheduledLicenseChangeLog)).all() == []


def test_c13_same_validation_as_operators(store, session):
    client, auth, sub, _ = _client(store, session)
    # C2: a reduction outside the 7-day window (Dec 1-7) is refused with the rule named.
    r = client.post(f"/subscriptions/{sub.id}/scheduled-changes", headers=auth, json={"quantity": 2, "effective_date": "2025-12-20"})
    assert r.status_code == 422 and r.json()["detail"]["rule"] == "SPEC C2"
    # C4: no refund on a contract that does not allow refunds.
    r = client.post(f"/subscriptions/{sub.id}/scheduled-changes", headers=auth,
                    json={"action": "deactivate", "apply_refund": True, "effective": "on_renewal"})
    assert r.status_code == 422 and "refund" in r.json()["detail"]["message"]
    # C8: one pending change at a time.
    assert client.post(f"/subscriptions/{sub.id}/scheduled-changes", headers=auth, json={"quantity": 12, "effective_date": "2025-12-22"}).status_code == 201
    r = client.post(f"/subscriptions/{sub.id}/scheduled-changes", headers=auth, json={"quantity": 13, "effective_date": "2025-12-23"})
    assert r.status_code == 422 and r.json()["detail"]["rule"] == "SPEC C8"
    # Today or the past is not a scheduled change.
    r = client.post(f"/subscriptions/{sub.id}/scheduled-changes", headers=auth, json={"quantity": 13, "effective_date": "2025-12-10"})
    assert r.status_code == 422
