"""End-customer change requests (SPEC C13): a small HTTP API for a customer portal.

A customer authenticates with its own bearer token (only its SHA-256 is stored) and may read and
schedule changes on its own subscriptions only; another customer's subscription is answered 404,
as if it did not exist. Requests go through the same service and the same validation as the
operators' changes (QRB/QRW, one pending change, refunds, currency), and are recorded with
source = portal. Mounted inside Airflow by the w365 plugin under ``/w365/portal``; ``create_app``
also runs on its own (``uvicorn --factory w365.interfaces.portal:create_app``).

Issue 12: a token expires (``DEFAULT_TOKEN_DAYS`` unless issued with ``--days``) and can be
revoked (``w365 portal revoke``); an expired or revoked token is answered 401 saying which. After
``AUTH_FAILURE_LIMIT`` wrong tokens within ``AUTH_FAILURE_WINDOW`` seconds a client address is
answered 429 with ``Retry-After`` (``w365.interfaces.web.security.FailureLimiter``). The OpenAPI document
(``/openapi.json``) and the list of operations (``/docs``) need a customer token too; there is no
Swagger UI (it would load scripts from a CDN). Every answer carries the security headers of
``w365.interfaces.web.security.PORTAL_HEADERS``.
"""


import hashlib
import html
import math
import secrets
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any, Callable, Iterator, Literal, Optional

from fastapi import Depends, FastAPI, Header, HTTPException, Request, status
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from w365.store.models import (
    OPEN_SLCL_STATUSES,
    ChangeEffective,
    ChangeSource,
    Customer,
    ScheduledLicenseChangeLog,
    Subscription,
)
from w365.core import limits, words
from w365.errors import NotFound, ValidationError, W365Error

TOKEN_BYTES = 32
DEFAULT_TOKEN_DAYS = 90  # a token's lifetime unless issued with another (`w365 portal token --days N`)
MAX_TOKEN_DAYS = 3660
AUTH_FAILURE_LIMIT = 10  # wrong tokens per client address ...
AUTH_FAILURE_WINDOW = 60.0  # ... in any this many seconds; then 429 until the oldest leaves the window


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(session: Session, customer_id: int, *, days: int = DEFAULT_TOKEN_DAYS, now: datetime | None = None) -> str:
    """A new portal token for a customer (replacing any previous one, revoked or not), valid for
    ``days`` days from ``now``; shown once, stored hashed with its expiry."""
    if not 1 <= days <= MAX_TOKEN_DAYS:
        raise ValidationError("portal token", f"lives 1 to {MAX_TOKEN_DAYS} days, not {days}")
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise NotFound(f"customer #{customer_id} does not exist")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    customer.portal_token_hash = hash_token(token)
    customer.portal_token_expires_at = (now or datetime.now(timezone.utc)) + timedelta(days=days)
    customer.portal_token_revoked_at = None
    return token


def revoke_token(session: Session, customer_id: int, *, now: datetime | None = None) -> datetime | None:
    """Revoke a customer's portal token: from now on it is answered 401 "revoked" (its hash is
    kept so that the portal can say so). Returns when it was revoked (earlier, if it already
    was), or None if the customer has no token."""
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise NotFound(f"customer #{customer_id} does not exist")
    if customer.portal_token_hash is None:
        return None
    if customer.portal_token_revoked_at is None:
        customer.portal_token_revoked_at = now or datetime.now(timezone.utc)
    return customer.portal_token_revoked_at


def _refused(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail,
                         headers={"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{detail}"'})


def _docs_html(doc: dict[str, Any]) -> str:
    """The operations of the OpenAPI document as a plain page (no script, no style, nothing
    loaded): what ``/docs`` shows an authenticated caller."""
    rows = "".join(
        f"<tr><td>{html.escape(method.upper())}</td><td><code>{html.escape(path)}</code></td>"
        f"<td>{html.escape(op.get('summary') or '')}</td></tr>"
        for path, ops in doc.get("paths", {}).items() for method, op in ops.items()
    )
    title = html.escape(doc.get("info", {}).get("title", ""))
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head><body>"
            f"<h1>{title}</h1><p>Every request needs <code>Authorization: Bearer &lt;customer token&gt;</code>. "
            f"The full schema: <a href=\"openapi.json\">openapi.json</a> (with the same header).</p>"
            f"<table><thead><tr><th>method</th><th>path</th><th>what</th></tr></thead><tbody>{rows}</tbody></table></body></html>")


class ChangeIn(BaseModel):
    """A requested change. Effective on a future date (Custom) or on the contract's renewal.

    Bounds are ``w365.core.limits``' (issue 12), the same as the CLI's and the importer's: a quantity
    out of them or a date outside 2000-01-01..2099-12-31 is answered 422 with the reason, before
    anything is read or written. A field the portal does not take (a price: customers do not set
    their own) is refused too, not ignored."""

    model_config = ConfigDict(extra="forbid")

    quantity: Optional[int] = Field(default=None, ge=0, le=limits.MAX_QUANTITY, description=limits.HELP_QUANTITY)
    action: Literal["change", "deactivate"] = "change"
    effective: Literal["custom", "on_renewal"] = "custom"
    effective_date: Optional[date] = Field(default=None, description=limits.HELP_DATE)
    apply_refund: bool = False
    currency: Optional[str] = Field(default=None, min_length=3, max_length=3)

    @field_validator("quantity", mode="before")
    @classmethod
    def _quantity(cls, value: Any) -> Any:
        if isinstance(value, float) and math.isfinite(value):
            value = Decimal(repr(value))  # JSON 3e9 or 1e20: a whole number, checked as one
        return value if value is None else limits.quantity(value)

    @field_validator("action", "effective", mode="before")
    @classmethod
    def _word(cls, value: Any, info: Any) -> Any:
        """``on_renewal``, ``on-renewal``, ``On Renewal``: one word in any spelling (issue 13)."""
        choices = {"action": ("change", "deactivate"), "effective": ("custom", "on_renewal")}[info.field_name]
        return (words.choose(value, choices) or value) if isinstance(value, str) else value

    @field_validator("effective_date")
    @classmethod
    def _date(cls, value: Optional[date]) -> Optional[date]:
        return value if value is None else limits.in_range(value, "effective_date")


class ScheduledChangeOut(BaseModel):
    id: int
    subscription_id: int
    status: str
    action: str
    quantity: Optional[int]
    effective_date: date
    scheduled_for: datetime
    provision_on: date


class SubscriptionOut(BaseModel):
    id: int
    name: str
    status: str
    quantity: int
    selling_price: Decimal
    sales_unit: str
    currency: str
    contract_id: int


def _slcl_out(s: ScheduledLicenseChangeLog) -> ScheduledChangeOut:
    return ScheduledChangeOut(
        id=s.id, subscription_id=s.subscription_id, status=s.status.value, action=s.action.value, quantity=s.quantity,
        effective_date=s.effective_date, scheduled_for=s.scheduled_for, provision_on=s.provision_on,
    )


def create_app(session_scope: Callable[[], Any] | None = None, clock: Callable[[], datetime] | None = None,
               limiter: Any | None = None) -> FastAPI:
    """The portal app. ``session_scope``, ``clock`` and ``limiter`` are injectable for tests; an
    injected ``clock`` also drives the default limiter's window (else it is monotonic)."""
    from w365.interfaces.web import security

    if session_scope is None:
        from w365.store.session import session_scope as default_scope

        session_scope = default_scope
    now = clock or (lambda: datetime.now(timezone.utc))
    if limiter is None:
        options: dict[str, Any] = {"clock": lambda: now().timestamp()} if clock else {}
        limiter = security.FailureLimiter(AUTH_FAILURE_LIMIT, AUTH_FAILURE_WINDOW, **options)
    # The document is for customers' programs only: /openapi.json and /docs need a token (below).
    app = FastAPI(title="w365 customer portal API", version="1", description=__doc__,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.limiter = limiter
    app.add_middleware(security.SecurityHeaders, headers=security.PORTAL_HEADERS)

    def db() -> Iterator[Session]:
        with session_scope() as s:  # one transaction per request
            yield s

    DB = Annotated[Session, Depends(db)]

    def customer(request: Request, s: DB, authorization: Annotated[Optional[str], Header()] = None) -> Customer:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a customer token is required", headers={"WWW-Authenticate": "Bearer"})
        client = security.client_address(request)
        wait = limiter.retry_after(client)
        if wait is not None:  # too many wrong tokens from this address: not even looked up
            raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                                f"too many failed authentications from {client}; try again in {wait} s",
                                headers={"Retry-After": str(wait)})
        found = s.scalars(select(Customer).where(Customer.portal_token_hash == hash_token(authorization[7:].strip()))).first()
        if found is None:
            limiter.failed(client)
            raise _refused("unknown token")
        if found.portal_token_revoked_at is not None:
            limiter.failed(client)
            raise _refused(f"this token was revoked on {found.portal_token_revoked_at:%Y-%m-%d %H:%M} UTC; ask for a new one")
        expires = found.portal_token_expires_at
        if expires is None or expires <= now():
            limiter.failed(client)
            when = f" on {expires:%Y-%m-%d %H:%M} UTC" if expires is not None else " (it has no expiry date)"
            raise _refused(f"this token expired{when}; ask for a new one")
        return found

    Me = Annotated[Customer, Depends(customer)]

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_document(me: Me) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, response_class=HTMLResponse)
    def operations(me: Me) -> HTMLResponse:
        return HTMLResponse(_docs_html(app.openapi()))

    def own(s: Session, me: Customer, subscription_id: int) -> Subscription:
        if not 1 <= subscription_id <= limits.MAX_ID:  # no id is that large (SQLite would overflow)
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no subscription #{subscription_id}")
        sub = s.get(Subscription, subscription_id)
        if sub is None or sub.customer_id != me.id:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no subscription #{subscription_id}")
        return sub

    @app.get("/subscriptions", response_model=list[SubscriptionOut])
    def list_subscriptions(s: DB, me: Me) -> list[SubscriptionOut]:
        subs = s.scalars(select(Subscription).where(Subscription.customer_id == me.id).order_by(Subscription.id))
        return [
            SubscriptionOut(id=x.id, name=x.name, status=x.status.value, quantity=x.quantity, selling_price=x.selling_price,
                            sales_unit=x.sales_unit, currency=x.currency, contract_id=x.contract_id)
            for x in subs
        ]

    @app.get("/subscriptions/{subscription_id}/scheduled-changes", response_model=list[ScheduledChangeOut])
    def list_changes(subscription_id: int, s: DB, me: Me) -> list[ScheduledChangeOut]:
        own(s, me, subscription_id)
        rows = s.scalars(
            select(ScheduledLicenseChangeLog)
            .where(ScheduledLicenseChangeLog.subscription_id == subscription_id, ScheduledLicenseChangeLog.status.in_(OPEN_SLCL_STATUSES))
            .order_by(ScheduledLicenseChangeLog.id)
        )
        return [_slcl_out(x) for x in rows]

    @app.post("/subscriptions/{subscription_id}/scheduled-changes", response_model=ScheduledChangeOut, status_code=201)
    def request_change(subscription_id: int, body: ChangeIn, s: DB, me: Me) -> ScheduledChangeOut:
        from w365.billing.changes import ChangeRequest, change_subscription
        from w365.billing.subscriptions import get_tenant
        from w365.core import tenant_time

        own(s, me, subscription_id)
        when = now()
        if body.effective == "custom":
            if body.effective_date is None:
                raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "effective_date is required for a custom change")
            if body.effective_date <= tenant_time.today(get_tenant(s).time_zone, when):
                raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "a portal request must be for a future date")
        req = ChangeRequest(
            action=body.action, quantity=body.quantity, apply_refund=body.apply_refund, currency=body.currency,
            effective=ChangeEffective.ON_RENEWAL if body.effective == "on_renewal" else ChangeEffective.CUSTOM,
            effective_date=body.effective_date, source=ChangeSource.PORTAL, requested_by=f"portal:customer#{me.id}",
        )
        try:
            result = change_subscription(s, subscription_id, req, now=when)
        except ValidationError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, {"message": str(exc), "rule": exc.rule}) from None
        except W365Error as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, {"message": str(exc)}) from None
        if result.slcl is None:  # pragma: no cover - future dates always schedule
            raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, "change was not scheduled")
        return _slcl_out(result.slcl)

    return app
