"""End-customer portal API (SPEC C13): same validation as operators, own subscriptions only."""

from datetime import date, datetime, timedelta, timezone

from fastapi.testclient import TestClient
from sqlalchemy import select

import factories as f
from w365.store.models import ChangeSource, ScheduledLicenseChangeLog
from w365.interfaces.portal import create_app, issue_token

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


# --- issue 12: the portal's own hardening (SPEC C13) ------------------------------------------

class Clock:
    """An injectable clock (the portal's ``now`` and its limiter's window): tests never sleep."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **kw: float) -> None:
        self.at += timedelta(**kw)


def _customers(session):
    f.set_timezone(session, "America/Los_Angeles")
    mine = f.customer(session, "Fabrikam")
    f.subscription(session, f.contract(session, mine, start=date(2025, 12, 1)), name="Mine")
    theirs = f.customer(session, "Northwind")
    session.commit()
    return mine, theirs


def test_c13_openapi_and_docs_need_a_customer_token(store, session):
    """issue 12, SPEC C13: /openapi.json and /docs are not open to anonymous callers (401); with
    a customer token they answer 200. There is no Swagger UI or ReDoc (no CDN scripts)."""
    mine, _ = _customers(session)
    token = issue_token(session, mine.id, now=NOW)
    session.commit()
    client = TestClient(create_app(clock=lambda: NOW))
    auth = {"Authorization": f"Bearer {token}"}
    for path in ("/openapi.json", "/docs"):
        r = client.get(path)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer"), (path, r.text)
        assert client.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401
    doc = client.get("/openapi.json", headers=auth)
    assert doc.status_code == 200 and "/subscriptions/{subscription_id}/scheduled-changes" in doc.json()["paths"]
    assert "/openapi.json" not in doc.json()["paths"] and "/docs" not in doc.json()["paths"]
    page = client.get("/docs", headers=auth)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<code>/subscriptions</code>" in page.text and "<script" not in page.text and "http" not in page.text
    assert client.get("/redoc", headers=auth).status_code == 404


def test_c13_wrong_tokens_are_limited_per_client_address(store, session, monkeypatch):
    """issue 12, SPEC C13: after 10 wrong tokens within a minute an address is answered 429 with
    Retry-After (sliding window, injected clock), even for a right token; another address is
    not affected; once the oldest failures leave the window the address is answered again."""
    monkeypatch.delenv("AIRFLOW__W365__TRUSTED_PROXIES", raising=False)
    mine, _ = _customers(session)
    token = issue_token(session, mine.id, now=NOW)
    session.commit()
    clock = Clock(NOW)
    app = create_app(clock=clock)
    attacker = TestClient(app, client=("198.51.100.7", 40000))
    other = TestClient(app, client=("198.51.100.8", 40000))
    right, wrong = {"Authorization": f"Bearer {token}"}, {"Authorization": "Bearer guess"}
    for _ in range(5):
        assert attacker.get("/subscriptions", headers=wrong).status_code == 401
    clock.advance(seconds=30)
    for _ in range(5):
        assert attacker.get("/subscriptions", headers=wrong).status_code == 401
    r = attacker.get("/subscriptions", headers=wrong)
    assert r.status_code == 429 and r.headers["retry-after"] == "30" and "too many failed" in r.json()["detail"]
    r = attacker.get("/subscriptions", headers=right)  # blocked means blocked: no token is looked up
    assert r.status_code == 429
    # The X-Forwarded-For of a client that is not a configured proxy changes nothing.
    assert attacker.get("/subscriptions", headers={**right, "X-Forwarded-For": "203.0.113.9"}).status_code == 429
    assert other.get("/subscriptions", headers=right).status_code == 200
    assert other.get("/subscriptions", headers=wrong).status_code == 401
    clock.advance(seconds=30)  # the first five left the window (sliding, not a fixed minute)
    assert attacker.get("/subscriptions", headers=right).status_code == 200
    for _ in range(5):
        assert attacker.get("/subscriptions", headers=wrong).status_code == 401
    r = attacker.get("/subscriptions", headers=right)
    assert r.status_code == 429 and r.headers["retry-after"] == "30"
    clock.advance(seconds=61)
    assert attacker.get("/subscriptions", headers=right).status_code == 200

    # Behind a configured proxy the client is the address it forwards, not the proxy itself.
    monkeypatch.setenv("AIRFLOW__W365__TRUSTED_PROXIES", "10.0.0.0/24")
    proxy = TestClient(app, client=("10.0.0.5", 40000))
    for _ in range(10):
        assert proxy.get("/subscriptions", headers={**wrong, "X-Forwarded-For": "203.0.113.5"}).status_code == 401
    assert proxy.get("/subscriptions", headers={**right, "X-Forwarded-For": "203.0.113.5"}).status_code == 429
    # ... and a client cannot escape by putting another address in front of the chain.
    assert proxy.get("/subscriptions", headers={**right, "X-Forwarded-For": "1.2.3.4, 203.0.113.5"}).status_code == 429
    assert proxy.get("/subscriptions", headers={**right, "X-Forwarded-For": "203.0.113.6"}).status_code == 200
    assert proxy.get("/subscriptions", headers={**right, "Forwarded": 'for="[2001:db8::1]:4711"'}).status_code == 200


def test_failure_limiter_is_thread_safe_and_bounded():
    """issue 12, SPEC C13: the limiter is shared by the api-server's threads."""
    import threading

    from w365.interfaces.web.security import FailureLimiter

    now = [0.0]
    limiter = FailureLimiter(limit=10, window=60, clock=lambda: now[0], max_clients=50)
    threads = [threading.Thread(target=lambda k=k: [limiter.failed(f"a{k % 100}") for _ in range(20)]) for k in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 0 < len(limiter._failures) <= 50 and all(len(q) <= 10 for q in limiter._failures.values())
    for _ in range(10):
        limiter.failed("b")
    assert limiter.retry_after("b") == 60 and limiter.retry_after("c") is None
    now[0] = 59.5
    assert limiter.retry_after("b") == 1
    now[0] = 60.0
    assert all(limiter.retry_after(k) is None for k in list(limiter._failures))


def test_c13_tokens_expire_and_can_be_revoked(store, session, capsys):
    """issue 12, SPEC C13: `w365 portal token --days N` issues a token that works N days
    (default 90) and is answered 401 "expired" after; `w365 portal revoke` makes it 401
    "revoked" at once; a new token replaces it."""
    from w365.interfaces.cli import main
    from w365.store.models import Customer
    from w365.interfaces.portal import DEFAULT_TOKEN_DAYS

    mine, theirs = _customers(session)
    assert main(["portal", "token", "--customer", str(mine.id), "--days", "1"]) == 0
    out = capsys.readouterr()
    token = out.out.strip()
    assert len(token) > 30 and "\n" not in token and "valid for 1 day, until" in out.err
    issued = datetime.now(timezone.utc)
    clock = Clock(issued)
    client = TestClient(create_app(clock=clock))
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/subscriptions", headers=auth).status_code == 200
    clock.advance(days=1, minutes=1)
    r = client.get("/subscriptions", headers=auth)
    assert r.status_code == 401 and "expired" in r.json()["detail"] and "ask for a new one" in r.json()["detail"]
    assert 'error="invalid_token"' in r.headers["www-authenticate"]

    assert main(["portal", "token", "--customer", str(mine.id)]) == 0
    token = capsys.readouterr().out.strip()
    with store.session() as s:
        expires = s.get(Customer, mine.id).portal_token_expires_at
    assert timedelta(days=DEFAULT_TOKEN_DAYS - 1) < expires - issued <= timedelta(days=DEFAULT_TOKEN_DAYS, minutes=5)
    clock.at = issued
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/subscriptions", headers=auth).status_code == 200
    assert main(["portal", "revoke", "--customer", str(mine.id)]) == 0
    assert "revoked" in capsys.readouterr().out
    r = client.get("/subscriptions", headers=auth)
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    assert main(["portal", "revoke", "--customer", str(mine.id)]) == 0
    assert "already revoked" in capsys.readouterr().out
    assert main(["portal", "revoke", "--customer", str(theirs.id)]) == 0
    assert "nothing to revoke" in capsys.readouterr().out

    assert main(["portal", "token", "--customer", str(mine.id), "--days", "7"]) == 0
    fresh = capsys.readouterr().out.strip()
    assert client.get("/subscriptions", headers={"Authorization": f"Bearer {fresh}"}).status_code == 200
    assert client.get("/subscriptions", headers=auth).json()["detail"] == "unknown token"  # replaced
    assert main(["portal", "token", "--customer", str(mine.id), "--days", "0"]) == 2
    assert "--days" in capsys.readouterr().err


def test_c13_portal_sends_security_headers(store, session):
    """issue 12, SPEC C13: every portal answer (200, 401, 404) forbids framing and sniffing and
    loads nothing (CSP default-src 'none')."""
    from w365.interfaces.web.security import PORTAL_CSP

    mine, _ = _customers(session)
    token = issue_token(session, mine.id, now=NOW)
    session.commit()
    client = TestClient(create_app(clock=lambda: NOW))
    for r in (client.get("/subscriptions", headers={"Authorization": f"Bearer {token}"}), client.get("/subscriptions"),
              client.get("/nothing-here"), client.get("/docs", headers={"Authorization": f"Bearer {token}"})):
        assert r.headers["content-security-policy"] == PORTAL_CSP, r.request.url
        assert (r.headers["x-frame-options"], r.headers["x-content-type-options"], r.headers["referrer-policy"]) == \
            ("DENY", "nosniff", "no-referrer")


def test_migration_0003_adds_token_expiry_to_a_store_with_tokens_and_downgrades(store, tmp_path, monkeypatch):
    """issue 12, SPEC C13 (migration 0003): a 0002 store whose customers hold portal tokens is
    upgraded: every existing token gets the default lifetime from the upgrade (none stays valid
    forever, none is cut off), customers without one stay without; no other value changes; the
    downgrade drops the columns and keeps the rest, and upgrading again works."""
    import os

    from sqlalchemy import MetaData, text
    from sqlalchemy.orm import load_only

    from conftest import PG_ENV, Store
    from w365.store.models import Customer
    from w365 import store as w365_store
    from w365.store.admin import create_scratch_database, drop_database
    from w365.store.session import get_engine
    from w365.interfaces.portal import DEFAULT_TOKEN_DAYS, hash_token

    if store.is_postgres:
        url = create_scratch_database(os.environ[PG_ENV], "w365_test_0003")
    else:
        url = f"sqlite:///{tmp_path / 'old.db'}"
    monkeypatch.setenv("W365_DATABASE_URL", url)
    engine = get_engine(url)

    def customers(conn):
        meta = MetaData()
        meta.reflect(conn, only=["customer"])
        t = meta.tables["customer"]
        return [dict(r._mapping) for r in conn.execute(t.select().order_by(t.c.id))]

    try:
        w365_store.upgrade(url, "0002")
        with engine.begin() as c:  # raw SQL: the models already have 0003's columns
            for name, token in (("Fabrikam", "tok-a"), ("Northwind", None), ("Contoso", "tok-c")):
                c.execute(text("INSERT INTO customer (name, portal_token_hash, created_at) VALUES (:n, :h, :at)"),
                          {"n": name, "h": hash_token(token) if token else None, "at": NOW.replace(tzinfo=None)})
        with engine.connect() as c:
            before = customers(c)
            columns = set(before[0])
        assert "portal_token_expires_at" not in columns
        upgraded_at = datetime.now(timezone.utc)
        # To the head (through 0003): the models and the portal below are the head's.
        w365_store.upgrade(url)
        assert w365_store.current_revision(url) == w365_store.head_revision()
        with Store(store.backend, url, engine).session() as s:
            # Only 0003's columns: the model has later ones (the billing address, migration 0005; tax, 0006).
            rows = s.query(Customer).options(load_only(Customer.name, Customer.portal_token_hash, Customer.portal_token_expires_at,
                                                       Customer.portal_token_revoked_at)).order_by(Customer.id).all()
            for row, old in zip(rows, before):
                assert (row.name, row.portal_token_hash) == (old["name"], old["portal_token_hash"])
                assert row.portal_token_revoked_at is None
                if old["portal_token_hash"] is None:
                    assert row.portal_token_expires_at is None
                else:
                    left = row.portal_token_expires_at - upgraded_at
                    assert timedelta(days=DEFAULT_TOKEN_DAYS) - timedelta(minutes=5) < left <= timedelta(days=DEFAULT_TOKEN_DAYS, minutes=5)
        # A token from before the upgrade still works, with its new expiry, once the store is at
        # the head (what `w365 db upgrade` does; the portal's model has the later columns too).
        w365_store.upgrade(url)
        client = TestClient(create_app(clock=lambda: datetime.now(timezone.utc)))
        assert client.get("/subscriptions", headers={"Authorization": "Bearer tok-a"}).status_code == 200
        client = TestClient(create_app(clock=lambda: datetime.now(timezone.utc) + timedelta(days=DEFAULT_TOKEN_DAYS + 1)))
        assert "expired" in client.get("/subscriptions", headers={"Authorization": "Bearer tok-a"}).json()["detail"]

        cfg = w365_store.alembic_config(url)
        from alembic import command

        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0002")
        assert w365_store.current_revision(url) == "0002"
        with engine.connect() as c:
            assert customers(c) == before
        w365_store.upgrade(url)
        assert w365_store.current_revision(url) == w365_store.head_revision()
    finally:
        engine.dispose()
        if store.is_postgres:
            drop_database(url)
