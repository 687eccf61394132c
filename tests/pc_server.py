"""A local Partner Center look-alike for the tests: an HTTP server on 127.0.0.1 (a free port) that
speaks Partner Center's JSON (SPEC P1): OAuth token endpoint, ``/v1/customers`` and
``/v1/customers/{id}/subscriptions`` paged by continuation token, usage line items, and an
accounting ``/payments`` feed and ``PUT /invoices/{number}`` (issue 16: recorded by invoice number,
so a test can tell a retry from a duplicate). Faults are injected per path: HTTP 429 bursts with Retry-After,
HTTP 500s, slow answers.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest

CLIENT_ID = "w365-test-app"
CLIENT_SECRET = "s3cr3t-Pa55word-never-logged"
TOKEN = "tok-abc123-secret-token"


def _mark(data: Any) -> Any:
    if isinstance(data, Decimal):
        return f"__DEC__{data}__"
    if isinstance(data, dict):
        return {k: _mark(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_mark(v) for v in data]
    return data


def dumps(data: Any) -> bytes:
    """JSON with Decimals written as bare numbers with their exact digits (as an API sends them)."""
    return re.sub(r'"__DEC__(-?[0-9.]+)__"', r"\1", json.dumps(_mark(data))).encode()


@dataclass
class Fault:
    path: str  # prefix of the request path
    status: int
    count: int
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class FakePartnerCenter:
    customers: list[dict[str, Any]] = field(default_factory=list)
    subscriptions: dict[str, list[Any]] = field(default_factory=dict)
    usage: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)  # (day, kind) -> items
    payments: list[dict[str, Any]] = field(default_factory=list)
    page_size: int = 2
    faults: list[Fault] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    token_requests: list[dict[str, list[str]]] = field(default_factory=list)
    static_token: str | None = None  # accept this bearer token without the OAuth dance
    # PUT /invoices/{number}: every accepted body, by number (a second one for a number is a duplicate)
    invoices: dict[str, list[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    # -- lifecycle
    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802
                self._answer("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._answer("POST")

            def do_PUT(self) -> None:  # noqa: N802
                self._answer("PUT")

            def _answer(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method in ("POST", "PUT") else b""
                status, data, headers = fake.respond(method, self.path, dict(self.headers.items()), body)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except BrokenPipeError:  # the client gave up (a timeout test): nothing to answer
                    pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self.base_url

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def connection_json(self, **extra: Any) -> str:
        """An AIRFLOW_CONN_* value (JSON form) pointing at this server with OAuth credentials."""
        return json.dumps({
            "conn_type": "http", "host": "127.0.0.1", "port": int(self.base_url.rsplit(":", 1)[1]),
            "login": CLIENT_ID, "password": CLIENT_SECRET,
            "extra": {"token_url": self.base_url + "/token", "backoff_base": "0.001", "backoff_max": "0.01", **extra},
        })

    # -- serving
    def _fault_for(self, path: str) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if path.startswith(f.path) and f.count > 0:
                    f.count -= 1
                    return f
        return None

    def transport(self) -> httpx.MockTransport:
        """The same fake without a socket: httpx calls it in process (tests of the client's own
        behaviour; the jobs, which build their clients from connections, use the server)."""

        def handle(request: httpx.Request) -> httpx.Response:
            headers = {k.decode(): v.decode() for k, v in request.headers.raw}
            status, data, out = self.respond(request.method, request.url.raw_path.decode(), headers, request.read())
            return httpx.Response(status, headers=out, content=data)

        return httpx.MockTransport(handle)

    @staticmethod
    def _send(status: int, body: Any, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
        data = body if isinstance(body, bytes) else dumps(body)
        return status, data, {"Content-Type": "application/json", "Content-Length": str(len(data)), **(headers or {})}

    def respond(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes, dict[str, str]]:
        """(status, body, headers) for one request: the fake's whole behaviour."""
        parts = urlsplit(raw_path)
        path, query = parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self._lock:
            self.requests.append((method, raw_path, headers))
        if method == "POST" and path == "/token":
            form = parse_qs(body.decode())
            self.token_requests.append(form)
            if form.get("client_id") == [CLIENT_ID] and form.get("client_secret") == [CLIENT_SECRET]:
                return self._send(200, {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 3600})
            return self._send(400, {"error": "invalid_client"})
        fault = self._fault_for(path)
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            return self._send(fault.status, {"code": fault.status, "description": "injected fault"}, fault.headers)
        accepted = {TOKEN, self.static_token} - {None}
        if headers.get("Authorization", "").removeprefix("Bearer ") not in accepted:
            return self._send(401, {"description": "no or bad token"})
        token = headers.get("MS-ContinuationToken")
        if path == "/v1/customers":
            return self._page(self.customers, token, next_uri=f"/customers?size={self.page_size}&seekOperation=next")
        if path.startswith("/v1/customers/") and path.endswith("/subscriptions"):
            tenant = path.split("/")[3]
            if tenant not in self.subscriptions and tenant not in {c["id"] for c in self.customers}:
                return self._send(404, {"description": "customer not found"})
            return self._page(self.subscriptions.get(tenant, []), token, next_uri=None)
        if path == "/v1/usage/lineitems":
            items = self.usage.get((query.get("usageDate", ""), query.get("type", "")), [])
            return self._page(items, token, next_uri=f"/v1/usage/lineitems?usageDate={query.get('usageDate')}&type={query.get('type')}")
        if path == "/payments":
            return self._page(self.payments, token, next_uri="/payments?page=next")
        if method == "PUT" and path.startswith("/invoices/"):
            number = unquote(path.removeprefix("/invoices/"))
            with self._lock:
                self.invoices.setdefault(number, []).append(json.loads(body))
            return self._send(200, {"id": f"acct-{number}"})
        return self._send(404, {"description": f"no route {path}"})

    def _page(self, items: list[Any], token: str | None, next_uri: str | None) -> tuple[int, bytes, dict[str, str]]:
        start = int(token.removeprefix("ct-")) if token else 0
        chunk = items[start : start + self.page_size]
        body: dict[str, Any] = {"totalCount": len(items), "items": chunk, "attributes": {"objectType": "Collection"}}
        if start + self.page_size < len(items):
            nxt = f"ct-{start + self.page_size}"
            body["continuationToken"] = nxt
            if next_uri:
                body["links"] = {"next": {"uri": next_uri, "method": "GET", "headers": [{"key": "MS-ContinuationToken", "value": nxt}]}}
        return self._send(200, body)


def pc_subscription(sub_id: str, offer_id: str, quantity: Any = 10, status: str = "active", cycle: str = "monthly", **extra: Any) -> dict[str, Any]:
    """A subscription resource as Partner Center returns it."""
    return {
        "id": sub_id, "offerId": offer_id, "offerName": f"Offer {offer_id}", "friendlyName": f"{offer_id} seats",
        "quantity": quantity, "unitType": "Licenses", "status": status, "autoRenewEnabled": True, "billingCycle": cycle,
        "termDuration": "P1M" if cycle == "monthly" else "P1Y", "creationDate": "2026-01-10T08:00:00Z",
        "effectiveStartDate": "2026-01-10T00:00:00Z", "commitmentEndDate": "2027-01-09T00:00:00Z",
        "cancellationAllowedUntilDate": "2026-01-17T00:00:00Z", "attributes": {"objectType": "Subscription"}, **extra,
    }


def pc_usage(customer: str, subscription: str, day: str, meter: str, quantity: str, unit_price: str, total: str, currency: str = "USD") -> dict[str, Any]:
    """A usage line item (numbers as exact JSON numbers)."""
    return {
        "customerId": customer, "subscriptionId": subscription, "meterId": meter, "meterName": f"Meter {meter}",
        "unitOfMeasure": "1 Hour", "usageDate": f"{day}T00:00:00Z", "quantity": Decimal(quantity),
        "unitPrice": Decimal(unit_price), "billingPreTaxTotal": Decimal(total), "billingCurrency": currency,
    }


@pytest.fixture
def pc() -> Iterator[FakePartnerCenter]:
    """A running fake Partner Center (import this fixture into a test module)."""
    fake = FakePartnerCenter()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
