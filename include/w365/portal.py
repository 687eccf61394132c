"""End-customer change requests (SPEC C13): a small HTTP API for a customer portal.

A customer authenticates with its own bearer token (only its SHA-256 is stored) and may read and
schedule changes on its own subscriptions only; another customer's subscription is answered 404,
as if it did not exist. Requests go through the same service and the same validation as the
operators' changes (QRB/QRW, one pending change, refunds, currency), and are recorded with
source = portal. Mounted inside Airflow by the w365 plugin under ``/w365/portal``; ``create_app``
also runs on its own (``uvicorn --factory w365.portal:create_app``).
"""


import hashlib
import secrets
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Annotated, Any, Callable, Iterator, Literal, Optional

from fastapi import Depends, FastAPI, Header, HTTPException, status
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from w365.db.models import (
    OPEN_SLCL_STATUSES,
    ChangeEffective,
    ChangeSource,
    Customer,
    ScheduledLicenseChangeLog,
    Subscription,
)
from w365.errors import NotFound, ValidationError, W365Error

TOKEN_BYTES = 32


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(session: Session, customer_id: int) -> str:
    """A new portal token for a customer (replacing any previous one); shown once, stored hashed."""
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise NotFound(f"customer #{customer_id} does not exist")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    customer.portal_token_hash = hash_token(token)
    return token


class ChangeIn(BaseModel):
    """A requested change. Effective on a future date (Custom) or on the contract's renewal."""

    quantity: Optional[int] = Field(default=None, ge=0)
    action: Literal["change", "deactivate"] = "change"
    effective: Literal["custom", "on_renewal"] = "custom"
    effective_date: Optional[date] = None
    apply_refund: bool = False
    currency: Optional[str] = Field(default=None, min_length=3, max_length=3)


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


def create_app(session_scope: Callable[[], Any] | None = None, clock: Callable[[], datetime] | None = None) -> FastAPI:
    """The portal app. ``session_scope`` and ``clock`` are injectable for tests."""
    if session_scope is None:
        from w365.db.session import session_scope as default_scope

        session_scope = default_scope
    now = clock or (lambda: datetime.now(timezone.utc))
    app = FastAPI(title="w365 customer portal API", version="1", description=__doc__)

    def db() -> Iterator[Session]:
        with session_scope() as s:  # one transaction per request
            yield s

    DB = Annotated[Session, Depends(db)]

    def customer(s: DB, authorization: Annotated[Optional[str], Header()] = None) -> Customer:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a customer token is required", headers={"WWW-Authenticate": "Bearer"})
        found = s.scalars(select(Customer).where(Customer.portal_token_hash == hash_token(authorization[7:].strip()))).first()
        if found is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown token", headers={"WWW-Authenticate": "Bearer"})
        return found

    Me = Annotated[Customer, Depends(customer)]

    def own(s: Session, me: Customer, subscription_id: int) -> Subscription:
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
        from w365.subscriptions import ChangeRequest, change_subscription, get_tenant
        from w365 import tenant_time

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
