"""Provider clients and connections (SPEC P1, P4) against a local Partner Center look-alike."""

import json
import logging
import os
from datetime import date

import httpx
import pytest

from pc_server import CLIENT_SECRET, TOKEN, Fault, pc, pc_subscription, pc_usage  # noqa: F401 - pc is a fixture
from w365 import connections
from w365.connections import ConnectionInfo, ConnectionNotFound, get_connection
from w365.integrations.http import HttpError, JsonHttpClient, retry_after_seconds
from w365.integrations.providers import BadRecord, ProviderUnavailable, client_for, parse_subscription
from w365.integrations.providers.file_drop import FileDropProvider
from w365.integrations.providers.partner_center import PartnerCenterClient


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def as_airflow_reads(conn_id: str, value: str) -> ConnectionInfo:
    """The connection Airflow resolves from ``AIRFLOW_CONN_<ID>=value`` (SPEC P4)."""
    key = connections.env_var(conn_id)
    old = os.environ.get(key)
    os.environ[key] = value
    try:
        return get_connection(conn_id)
    finally:
        if old is None:
            del os.environ[key]
        else:
            os.environ[key] = old


def client(pc, sleeps=None, over_socket=False, **extra) -> PartnerCenterClient:
    """A client of the fake Partner Center, in process (httpx.MockTransport) unless the test needs
    a real socket (timeouts)."""
    conn = as_airflow_reads("partner_center", pc.connection_json(**extra))
    return PartnerCenterClient.from_connection(conn, sleep=sleeps if sleeps is not None else Sleeps(),
                                               transport=None if over_socket else pc.transport())


# ------------------------------------------------------------------------------------------
# Connections (SPEC P4)


def test_p4_connection_uri_form_and_password_never_in_repr():
    conn = as_airflow_reads("partner_center", "https://app-id:p%40ss-w0rd@api.example.com:8443/root?token_url=https%3A%2F%2Flogin%2Ft&scope=x")
    assert (conn.conn_type, conn.host, conn.login, conn.password, conn.port, conn.schema) == (
        "https", "api.example.com", "app-id", "p@ss-w0rd", 8443, "root")
    assert conn.extra == {"token_url": "https://login/t", "scope": "x"}
    assert conn.base_url() == "https://api.example.com:8443/root"
    assert "p@ss-w0rd" not in repr(conn) and "p@ss-w0rd" not in str(conn)


def test_p4_connection_json_form_and_file_path():
    conn = as_airflow_reads("drop", json.dumps({"conn_type": "fs", "extra": {"path": "/data/drop", "api_key": "k-123"}}))
    assert conn.path() == "/data/drop"
    assert "k-123" not in repr(conn)
    assert as_airflow_reads("drop", "file:///srv/files").path() == "/srv/files"
    assert as_airflow_reads("drop", json.dumps({"conn_type": "fs", "host": "/srv/drop"})).path() == "/srv/drop"
    assert ConnectionInfo("x", host="https://h.example/base/").base_url() == "https://h.example/base"


def test_p4_connections_come_from_airflow_and_a_missing_one_is_named(monkeypatch):
    """SPEC P4, issue 14: Airflow's Connection API resolves every connection (here its
    environment backend); a missing one is named with the variable that would define it."""
    monkeypatch.setenv("AIRFLOW_CONN_W365_TEST_CONN", "http://user:secret-1@127.0.0.1:9999/api")
    conn = get_connection("w365_test_conn")
    assert (conn.host, conn.login, conn.password, conn.port) == ("127.0.0.1", "user", "secret-1", 9999)
    assert conn.base_url() == "http://127.0.0.1:9999/api"
    with pytest.raises(ConnectionNotFound, match="AIRFLOW_CONN_W365_NOT_THERE"):
        get_connection("w365_not_there")


# ------------------------------------------------------------------------------------------
# HTTP behaviour: paging, 429, 500, timeouts, secrets


def _customers(pc, n):
    pc.customers = [{"id": f"tenant-{i}", "companyProfile": {"tenantId": f"tenant-{i}", "companyName": f"C{i}"}} for i in range(n)]


def test_p1_pages_through_customers_and_subscriptions(pc):
    _customers(pc, 5)  # 3 pages of 2 via links.next (relative to /v1, as Partner Center writes it)
    pc.subscriptions["tenant-0"] = [pc_subscription(f"sub-{i}", "CFQ7TTC0LH18") for i in range(5)]  # bare continuationToken
    with client(pc) as c:
        batches = list(c.subscription_batches())
    assert [b.customer_tenant_id for b in batches] == [f"tenant-{i}" for i in range(5)]
    assert [r["id"] for r in batches[0].records] == [f"sub-{i}" for i in range(5)]
    assert all(b.error is None for b in batches)
    pages = [p for m, p, h in pc.requests if p.startswith("/v1/customers?") or p == "/v1/customers"]
    assert len(pages) == 3
    cont = [h.get("MS-ContinuationToken") for m, p, h in pc.requests if "/tenant-0/subscriptions" in p]
    assert cont == [None, "ct-2", "ct-4"]
    # OAuth2 client credentials, fetched once and reused (SPEC P4)
    assert len(pc.token_requests) == 1 and pc.token_requests[0]["grant_type"] == ["client_credentials"]


def test_p1_429_burst_honours_retry_after_with_bounded_backoff(pc):
    _customers(pc, 1)
    pc.faults.append(Fault("/v1/customers", 429, 3, {"Retry-After": "7"}))
    sleeps = Sleeps()
    with client(pc, sleeps, backoff_max="5", max_retries="4") as c:
        batches = list(c.subscription_batches())
    assert [b.customer_tenant_id for b in batches] == ["tenant-0"]
    assert sleeps == [5.0, 5.0, 5.0]  # Retry-After 7 s, capped at backoff_max 5 s


def test_p1_retry_after_absent_uses_exponential_backoff_and_gives_up():
    sleeps = Sleeps()
    import httpx

    calls = []

    def handler(request):
        calls.append(request.url.path)
        return httpx.Response(503, json={"description": "busy"})

    http = JsonHttpClient("http://pc.test", backoff_base=0.5, backoff_max=3, max_retries=4, sleep=sleeps, transport=httpx.MockTransport(handler))
    with pytest.raises(HttpError, match="5 attempt"):
        http.get_json("/v1/customers")
    assert sleeps == [0.5, 1.0, 2.0, 3.0]  # 0.5 x 2^n, capped at 3
    assert len(calls) == 5
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # an HTTP date in the past


def test_p1_retries_stop_at_the_stated_budget():
    """Issue 14: the HTTP client is the one retry layer, with a budget per request: retries stop
    when the next wait would pass ``retry_budget`` seconds, even with retries left."""
    sleeps = Sleeps()
    http = JsonHttpClient("http://pc.test", backoff_base=1, backoff_max=100, max_retries=10, retry_budget=10, sleep=sleeps,
                          transport=httpx.MockTransport(lambda request: httpx.Response(500, json={})))
    with pytest.raises(HttpError, match="failed after 4 attempt"):
        http.get_json("/v1/customers")
    assert sleeps == [1, 2, 4]  # 1 + 2 + 4 = 7 s waited; another 8 s would make 15 > 10


def test_p1_transient_500_recovers_persistent_500_reports_that_customer_only(pc):
    _customers(pc, 3)
    for i in range(3):
        pc.subscriptions[f"tenant-{i}"] = [pc_subscription(f"s{i}", "CFQ7TTC0LH18")]
    pc.faults.append(Fault("/v1/customers/tenant-0/", 500, 1))  # once: retried
    pc.faults.append(Fault("/v1/customers/tenant-1/", 500, 99))  # always: that customer fails
    with client(pc, max_retries="2") as c:
        batches = {b.customer_tenant_id: b for b in c.subscription_batches()}
    assert batches["tenant-0"].error is None and len(batches["tenant-0"].records) == 1
    assert "HTTP 500" in batches["tenant-1"].error and batches["tenant-1"].records == []
    assert batches["tenant-2"].error is None and len(batches["tenant-2"].records) == 1


def test_p1_customer_list_down_is_provider_unavailable(pc):
    pc.faults.append(Fault("/v1/customers", 500, 99))
    with client(pc, max_retries="1") as c, pytest.raises(ProviderUnavailable, match="customer list"):
        list(c.subscription_batches())


def test_p1_requests_time_out(pc):
    _customers(pc, 1)
    pc.faults.append(Fault("/v1/customers", 200, 5, delay=0.5))
    with client(pc, over_socket=True, timeout="0.1", max_retries="1") as c, pytest.raises(ProviderUnavailable, match="timed out"):
        list(c.subscription_batches())


def test_p4_secrets_never_logged(pc, caplog):
    caplog.set_level(logging.DEBUG)
    _customers(pc, 1)
    pc.faults.append(Fault("/v1/customers", 429, 1, {"Retry-After": "0"}))
    with client(pc) as c:
        list(c.subscription_batches())
        assert CLIENT_SECRET not in repr(c) and TOKEN not in repr(c)
    assert caplog.records, "the client logs its retries"
    assert CLIENT_SECRET not in caplog.text and TOKEN not in caplog.text


def test_p1_usage_line_items_are_decimal_text_never_float(pc):
    pc.usage[("2026-01-14", "final")] = [
        pc_usage("tenant-0", "az-1", "2026-01-14", f"m{i}", "1.123456", "0.100000", f"{i}.1235") for i in range(3)
    ]
    with client(pc) as c:
        frame = c.usage(date(2026, 1, 14), "final")
    assert list(frame["pre_tax_total"]) == ["0.1235", "1.1235", "2.1235"]
    assert list(frame["quantity"]) == ["1.123456"] * 3
    assert set(frame["currency"]) == {"USD"}


def test_p1_client_for_uses_the_providers_connection(pc, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_PC_UNDER_TEST", pc.connection_json())

    class Row:
        name, kind, connection_id = "PC", "partner_center", "pc_under_test"

    _customers(pc, 1)
    with client_for(Row(), sleep=Sleeps()) as c:
        assert [b.customer_tenant_id for b in c.subscription_batches()] == ["tenant-0"]


# ------------------------------------------------------------------------------------------
# Records


def test_p1_parse_subscription_shape():
    ps = parse_subscription(pc_subscription("abc", "CFQ7TTC0LH18:0001", quantity="12", status="Suspended"), "tenant-9")
    assert (ps.id, ps.customer_tenant_id, ps.quantity, ps.status, ps.w365_status, ps.billing_cycle) == (
        "abc", "tenant-9", 12, "suspended", "suspended", "monthly")
    assert ps.effective_start_date.isoformat() == "2026-01-10T00:00:00+00:00"


@pytest.mark.parametrize("bad, reason", [
    ({"offerId": "x", "quantity": 1, "status": "active"}, "'id' is missing"),
    ({"id": "a", "offerId": "x", "quantity": "ten", "status": "active"}, "not a whole number"),
    ({"id": "a", "offerId": "x", "quantity": 1.5, "status": "active"}, "not a whole number"),
    ({"id": "a", "offerId": "x", "quantity": -1, "status": "active"}, "negative"),
    ({"id": "a", "offerId": "x", "quantity": 1, "status": "weird"}, "'status'"),
    ({"id": "a", "quantity": 1, "status": "active"}, "'offerId' is missing"),
    ({"id": "a", "offerId": "x", "quantity": 1, "status": "active", "creationDate": "yesterday"}, "ISO"),
    ("not an object", "must be an object"),
])
def test_p1_malformed_subscription_records_are_refused_with_a_reason(bad, reason):
    with pytest.raises(BadRecord, match=reason):
        parse_subscription(bad, "tenant-1")


def test_p1_file_drop_reads_the_same_shapes(tmp_path):
    (tmp_path / "subscriptions.json").write_text(json.dumps({"items": [
        {**pc_subscription("f-1", "SKU1"), "customerId": "t-1"},
        {**pc_subscription("f-2", "SKU1"), "customerId": "t-2"},
        {**pc_subscription("f-3", "SKU2"), "customerId": "t-1"},
    ]}))
    (tmp_path / "usage" / "interim").mkdir(parents=True)
    (tmp_path / "usage" / "interim" / "2026-01-14.csv").write_text(
        "customerId,subscriptionId,meterId,meterName,unitOfMeasure,usageDate,quantity,unitPrice,preTaxTotal,currency\n"
        "t-1,az-1,m1,Compute,1 Hour,2026-01-14,3.5,0.200000,0.7000,EUR\n"
    )
    drop = FileDropProvider(tmp_path)
    batches = {b.customer_tenant_id: [r["id"] for r in b.records] for b in drop.subscription_batches()}
    assert batches == {"t-1": ["f-1", "f-3"], "t-2": ["f-2"]}
    frame = drop.usage(date(2026, 1, 14), "interim")
    assert frame.iloc[0].to_dict() == {
        "customer": "t-1", "subscription": "az-1", "meter_id": "m1", "meter_name": "Compute", "unit": "1 Hour",
        "usage_date": "2026-01-14", "quantity": "3.5", "unit_price": "0.200000", "pre_tax_total": "0.7000", "currency": "EUR",
    }
    assert drop.usage(date(2026, 1, 15), "interim") is None  # no export yet: nothing, not an error
    with pytest.raises(ProviderUnavailable):
        list(FileDropProvider(tmp_path / "missing").subscription_batches())


def test_p1_file_drop_csv_subscriptions(tmp_path):
    (tmp_path / "subscriptions.csv").write_text(
        "customerId,id,offerId,quantity,status,billingCycle\n"
        "t-1,c-1,SKU1,4,active,monthly\n"
        "t-1,c-2,SKU1,,active,monthly\n"
    )
    batch = next(FileDropProvider(tmp_path).subscription_batches())
    assert parse_subscription(batch.records[0], batch.customer_tenant_id).quantity == 4
    with pytest.raises(BadRecord):
        parse_subscription(batch.records[1], batch.customer_tenant_id)
