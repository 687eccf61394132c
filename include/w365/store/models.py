"""The billing store: SQLAlchemy 2 typed models for the whole domain.

Alembic owns the schema (``include/w365/store/migrations``); these models are its source. Constraints
live in the database, not only here: NUMERIC money, foreign keys, CHECKs on enums and signs, the
unique keys that make invoicing idempotent (one full-cycle invoice per contract and period, one
first-billing line per subscription and day) and the partial unique index that allows at most one
open SLCL per subscription (SPEC C8). One deployment serves one CSP tenant (its DAG schedules run
in that tenant's zone), so ``tenant`` holds a single row.
"""

from __future__ import annotations

import enum
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Annotated, Optional

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    Enum,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from w365.core.vocabulary import (  # re-exported: the columns below are typed with them
    ChangeBilling,
    ChangeEffective,
    ChangeSource,
    ChangeType,
    ContractStatus,
    DocumentType,
    DeliveryChannel,
    DeliveryStatus,
    InvoiceKind,
    InvoiceLineKind,
    LCLKind,
    OPEN_SLCL_STATUSES,  # noqa: F401 - re-exported with the enums
    PaymentStatus,
    ProductKind,
    ProviderKind,
    ProvisioningStatus,
    QRB,
    SLCLAction,
    SLCLStatus,
    SubscriptionStatus,
    UsageKind,
)
from w365.store.types import ExactDecimal, UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Money: amounts rounded to a currency's minor unit (at most 3 for ISO 4217 currencies in use;
# 4 leaves room for CLF-like units). Prices per unit keep 6 places; quantities 6 (usage).
Money = Annotated[Decimal, mapped_column(ExactDecimal(18, 4))]
Price = Annotated[Decimal, mapped_column(ExactDecimal(18, 6))]
Quantity = Annotated[Decimal, mapped_column(ExactDecimal(18, 6))]
Rate = Annotated[Decimal, mapped_column(ExactDecimal(18, 8))]
TaxPercent = Annotated[Decimal, mapped_column(ExactDecimal(7, 4))]  # 20.0000 = 20 % (SPEC I1)
Instant = Annotated[datetime, mapped_column(UTCDateTime())]
Currency = Annotated[str, mapped_column(String(3))]
intpk = Annotated[int, mapped_column(Integer, primary_key=True, autoincrement=True)]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UTCDateTime(),
        Decimal: ExactDecimal(18, 4),
        date: Date(),
    }


def _nonneg(*columns: str) -> str:
    """CHECK text for non-negative money. The CAST matters on SQLite, where money is decimal
    text and a bare ``x >= 0`` compares text with an integer (always true)."""
    return " AND ".join(f"CAST({c} AS NUMERIC) >= 0" for c in columns)


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    """A VARCHAR + CHECK enum (portable; adding a value is an ordinary migration)."""
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=24,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )



class Tenant(Base):
    __tablename__ = "tenant"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True, default=1)
    name: Mapped[str] = mapped_column(String(200))
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    invoice_prefix: Mapped[str] = mapped_column(String(20), default="INV-", server_default="INV-")
    # Gapless numbering: taken under a row lock in the same transaction as the invoice.
    next_invoice_number: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # Credit notes have their own gapless series (SPEC I6; migration 0006).
    credit_note_prefix: Mapped[str] = mapped_column(String(20), default="CN-", server_default="CN-")
    next_credit_note_number: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # The first invoice sequence issued with credit notes (migration 0006 sets the next number):
    # invoices before it may have a negative total, as corrections were issued then (SPEC I6, I7).
    credit_notes_from: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The seller block of the invoice document (issue 16, SPEC I11; migration 0005), set with
    # `w365 tenant set`. All optional: a store without them still renders its invoices.
    legal_name: Mapped[Optional[str]] = mapped_column(String(200))
    address_line1: Mapped[Optional[str]] = mapped_column(String(200))
    address_line2: Mapped[Optional[str]] = mapped_column(String(200))
    city: Mapped[Optional[str]] = mapped_column(String(100))
    postal_code: Mapped[Optional[str]] = mapped_column(String(20))
    region: Mapped[Optional[str]] = mapped_column(String(100))
    country: Mapped[Optional[str]] = mapped_column(String(2))  # ISO 3166-1 alpha-2
    tax_id: Mapped[Optional[str]] = mapped_column(String(50))  # VAT / tax registration number
    # How amounts and dates read on the document (babel/CLDR: en_US, de_DE, ...; SPEC I13).
    locale: Mapped[str] = mapped_column(String(16), default="en_US", server_default="en_US")


class UnitMapping(Base):
    """Sales units and billing frequencies with their length in months (SPEC B1, B5).

    ``months`` NULL marks a one-time (non-recurring) unit. Custom cadences (Semi-Annual = 6) are
    rows here, as in the seed's Administration -> Unit Mapping.
    """

    __tablename__ = "unit_mapping"
    __table_args__ = (CheckConstraint("months IS NULL OR months > 0", name="months_positive"),)

    code: Mapped[str] = mapped_column(String(24), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    months: Mapped[Optional[int]] = mapped_column(Integer)


class ExchangeRate(Base):
    """Conversion for subscriptions priced in another currency than their contract (SPEC S1)."""

    __tablename__ = "exchange_rate"
    __table_args__ = (
        UniqueConstraint("from_currency", "to_currency", "effective_from"),
        CheckConstraint("CAST(rate AS NUMERIC) > 0", name="rate_positive"),
    )

    id: Mapped[intpk]
    from_currency: Mapped[Currency]
    to_currency: Mapped[Currency]
    rate: Mapped[Rate]
    effective_from: Mapped[date]


class TaxCode(Base):
    """A tax code (SPEC I1): VAT20, US-NY-SALES, ... Its rates are ``tax_rate`` rows."""

    __tablename__ = "tax_code"

    code: Mapped[str] = mapped_column(String(24), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))


class TaxRate(Base):
    """A tax code's rate in percent from a day on (SPEC I1, I3). A change is a new row with a
    later effective date; rates are never edited or removed."""

    __tablename__ = "tax_rate"
    __table_args__ = (
        UniqueConstraint("code", "effective_from"),
        CheckConstraint("CAST(rate AS NUMERIC) >= 0 AND CAST(rate AS NUMERIC) <= 100", name="rate_percent"),
    )

    id: Mapped[intpk]
    code: Mapped[str] = mapped_column(ForeignKey("tax_code.code"))
    rate: Mapped[TaxPercent]
    effective_from: Mapped[date]


class Customer(Base):
    __tablename__ = "customer"

    id: Mapped[intpk]
    name: Mapped[str] = mapped_column(String(200))
    # Partner Center customer tenant id (a GUID).
    provider_tenant_id: Mapped[Optional[str]] = mapped_column(String(64), unique=True)
    email: Mapped[Optional[str]] = mapped_column(String(200))
    # Where invoices are e-mailed (issue 16, I21; migration 0007): one or more addresses,
    # comma-separated. No address, no e-mail: the Send Invoices job reports it and goes on.
    billing_email: Mapped[Optional[str]] = mapped_column(String(320))
    salesperson: Mapped[Optional[str]] = mapped_column(String(100))
    # SHA-256 of the end-customer portal token (SPEC C13); the token itself is never stored.
    portal_token_hash: Mapped[Optional[str]] = mapped_column(String(64), unique=True)
    # When that token stops working, and when it was revoked (issue 12; migration 0003). A
    # revoked token keeps its hash so that the portal can answer "revoked" rather than "unknown".
    portal_token_expires_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    portal_token_revoked_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    # Tax (SPEC I2; migration 0006): the customer's code; an exemption reference makes every
    # line of the customer's untaxed, whatever the codes say.
    tax_code: Mapped[Optional[str]] = mapped_column(ForeignKey("tax_code.code"))
    tax_exempt_reference: Mapped[Optional[str]] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The bill-to block of the invoice document (issue 16, SPEC I11; migration 0005): the
    # customers.csv columns of the same names. All optional.
    billing_address_line1: Mapped[Optional[str]] = mapped_column(String(200))
    billing_address_line2: Mapped[Optional[str]] = mapped_column(String(200))
    billing_city: Mapped[Optional[str]] = mapped_column(String(100))
    billing_postal_code: Mapped[Optional[str]] = mapped_column(String(20))
    billing_region: Mapped[Optional[str]] = mapped_column(String(100))
    billing_country: Mapped[Optional[str]] = mapped_column(String(2))  # ISO 3166-1 alpha-2

    contracts: Mapped[list["BillingContract"]] = relationship(back_populates="customer")


class Provider(Base):
    __tablename__ = "provider"

    id: Mapped[intpk]
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[ProviderKind] = mapped_column(_enum(ProviderKind, "provider_kind"))
    # Airflow Connection id holding base URL and credentials (SPEC P4); never secrets here.
    connection_id: Mapped[Optional[str]] = mapped_column(String(100))
    alert_email: Mapped[Optional[str]] = mapped_column(String(200))


class Product(Base):
    __tablename__ = "product"
    __table_args__ = (CheckConstraint("default_qrw_days IS NULL OR default_qrw_days >= 0", name="qrw_nonneg"),)

    id: Mapped[intpk]
    sku: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[ProductKind] = mapped_column(_enum(ProductKind, "product_kind"))
    provider_id: Mapped[Optional[int]] = mapped_column(ForeignKey("provider.id"))
    offer_id: Mapped[Optional[str]] = mapped_column(String(100), index=True)  # Partner Center offerId
    default_qrb: Mapped[QRB] = mapped_column(_enum(QRB, "qrb"), default=QRB.WINDOW)
    default_qrw_days: Mapped[Optional[int]] = mapped_column(Integer, default=7)
    # Overrides the customer's tax code for this product (SPEC I2; migration 0006).
    tax_code: Mapped[Optional[str]] = mapped_column(ForeignKey("tax_code.code"))


class ProductPrice(Base):
    """The price list (SPEC P3). A price change is a new row with a later effective date;
    history is never rewritten."""

    __tablename__ = "product_price"
    __table_args__ = (
        UniqueConstraint("product_id", "price_list", "sales_unit", "currency", "effective_from"),
        CheckConstraint(_nonneg("selling_price", "cost_price"), name="prices_nonneg"),
    )

    id: Mapped[intpk]
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"))
    price_list: Mapped[str] = mapped_column(String(50), default="default")
    sales_unit: Mapped[str] = mapped_column(ForeignKey("unit_mapping.code"))
    currency: Mapped[Currency]
    cost_price: Mapped[Price]
    selling_price: Mapped[Price]
    effective_from: Mapped[date]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --------------------------------------------------------------------------------------------
# Contracts and subscriptions


class BillingContract(Base):
    __tablename__ = "billing_contract"
    __table_args__ = (
        UniqueConstraint("id", "customer_id", name="id_customer"),  # target of subscription's composite FK
        CheckConstraint("end_date IS NULL OR end_date >= start_date", name="end_after_start"),
        CheckConstraint("term_months IS NULL OR term_months > 0", name="term_positive"),
        Index("ix_billing_contract_due", "status", "next_invoice_date"),
    )

    id: Mapped[intpk]
    number: Mapped[str] = mapped_column(String(50), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"))
    frequency: Mapped[str] = mapped_column(ForeignKey("unit_mapping.code"))
    currency: Mapped[Currency]
    start_date: Mapped[date]  # the billing anchor (SPEC B2)
    end_date: Mapped[Optional[date]]  # last day of the current term, inclusive; NULL = evergreen
    term_months: Mapped[Optional[int]] = mapped_column(Integer)  # renewal term; NULL = frequency
    next_invoice_date: Mapped[Optional[date]]
    # First day of the first period w365 billed; periods from here to next_invoice_date are
    # "billed periods" that change-log invoices reconcile. Earlier ones were billed elsewhere.
    billed_from: Mapped[Optional[date]]
    auto_renew: Mapped[bool] = mapped_column(Boolean, default=True)
    refunds_allowed: Mapped[bool] = mapped_column(Boolean, default=False)
    change_billing: Mapped[ChangeBilling] = mapped_column(
        _enum(ChangeBilling, "change_billing"), default=ChangeBilling.IMMEDIATE
    )
    status: Mapped[ContractStatus] = mapped_column(_enum(ContractStatus, "contract_status"), default=ContractStatus.ACTIVE)
    price_list: Mapped[str] = mapped_column(String(50), default="default")
    last_renewed_on: Mapped[Optional[date]]  # reopens the quantity-reduction window (SPEC C2)
    payment_terms_days: Mapped[int] = mapped_column(Integer, default=30)
    salesperson: Mapped[Optional[str]] = mapped_column(String(100))
    mrr: Mapped[Optional[Money]]
    acv: Mapped[Optional[Money]]
    metrics_as_of: Mapped[Optional[date]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    customer: Mapped[Customer] = relationship(back_populates="contracts")
    subscriptions: Mapped[list["Subscription"]] = relationship(back_populates="contract", foreign_keys="Subscription.contract_id")


class Subscription(Base):
    __tablename__ = "subscription"
    __table_args__ = (
        # A subscription's customer is its contract's customer, enforced by the database.
        ForeignKeyConstraint(
            ["contract_id", "customer_id"], ["billing_contract.id", "billing_contract.customer_id"], name="fk_subscription_contract_customer"
        ),
        CheckConstraint("quantity >= 0", name="quantity_nonneg"),
        CheckConstraint(_nonneg("selling_price", "cost_price"), name="prices_nonneg"),
        CheckConstraint("qrw_days IS NULL OR qrw_days >= 0", name="qrw_nonneg"),
    )

    id: Mapped[intpk]
    name: Mapped[str] = mapped_column(String(200))
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"))
    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"))
    contract_id: Mapped[int] = mapped_column(ForeignKey("billing_contract.id"), index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    selling_price: Mapped[Price]  # per sales unit, in the subscription's currency
    cost_price: Mapped[Price]
    sales_unit: Mapped[str] = mapped_column(ForeignKey("unit_mapping.code"))
    currency: Mapped[Currency]
    price_list: Mapped[str] = mapped_column(String(50), default="default")
    status: Mapped[SubscriptionStatus] = mapped_column(
        _enum(SubscriptionStatus, "subscription_status"), default=SubscriptionStatus.ACTIVE
    )
    qrb: Mapped[QRB] = mapped_column(_enum(QRB, "qrb"), default=QRB.WINDOW)
    qrw_days: Mapped[Optional[int]] = mapped_column(Integer, default=7)
    provider_subscription_id: Mapped[Optional[str]] = mapped_column(String(64), unique=True)
    start_date: Mapped[date]  # when billing starts (its activation LCL's bill-from day)
    provisioned_on: Mapped[Optional[date]]  # opens the quantity-reduction window (SPEC C2)
    usage_threshold: Mapped[Optional[Money]]  # Azure: alert threshold per month
    markup_pct: Mapped[Decimal] = mapped_column(ExactDecimal(9, 4), default=Decimal("0"))  # usage over cost
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    contract: Mapped[BillingContract] = relationship(back_populates="subscriptions", foreign_keys=[contract_id])
    product: Mapped[Product] = relationship()
    provider: Mapped[Provider] = relationship()
    change_logs: Mapped[list["LicenseChangeLog"]] = relationship(
        back_populates="subscription", order_by="LicenseChangeLog.id"
    )


class LicenseChangeLog(Base):
    """One change to a subscription (SPEC S3). Append-only: database triggers refuse deletes and
    updates of what the change was; only provisioning bookkeeping may change afterwards.

    ``bill_from`` is the first tenant-local day billed at the ``*_after`` values (SPEC S6).
    The subscription's current state is the fold of its LCLs (``w365 verify ledger``).
    """

    __tablename__ = "license_change_log"
    __table_args__ = (
        Index("ix_license_change_log_sub_bill_from", "subscription_id", "bill_from"),
        CheckConstraint("quantity_before >= 0 AND quantity_after >= 0", name="quantity_nonneg"),
    )

    id: Mapped[intpk]
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscription.id"))
    kind: Mapped[LCLKind] = mapped_column(_enum(LCLKind, "lcl_kind"))
    change_type: Mapped[ChangeType] = mapped_column(_enum(ChangeType, "change_type"))
    direction: Mapped[str] = mapped_column(
        String(8), CheckConstraint("direction IN ('positive', 'negative', 'neutral')", name="direction")
    )
    quantity_before: Mapped[int] = mapped_column(Integer)
    quantity_after: Mapped[int] = mapped_column(Integer)
    selling_price_before: Mapped[Price]
    selling_price_after: Mapped[Price]
    cost_price_before: Mapped[Price]
    cost_price_after: Mapped[Price]
    sales_unit_before: Mapped[str] = mapped_column(String(24))
    sales_unit_after: Mapped[str] = mapped_column(ForeignKey("unit_mapping.code"))
    status_before: Mapped[SubscriptionStatus] = mapped_column(_enum(SubscriptionStatus, "status_before"))
    status_after: Mapped[SubscriptionStatus] = mapped_column(_enum(SubscriptionStatus, "status_after"))
    effective_date: Mapped[date]  # tenant-local date D of the change
    effective_at: Mapped[Instant]  # 00:05 / 23:30 on D in tenant time, or "now" for Immediately
    bill_from: Mapped[date]
    apply_refund: Mapped[bool] = mapped_column(Boolean, default=True)  # False: prepaid days not credited (C4)
    source: Mapped[ChangeSource] = mapped_column(_enum(ChangeSource, "change_source"))
    slcl_id: Mapped[Optional[int]] = mapped_column(ForeignKey("scheduled_license_change_log.id"), unique=True)
    provisioning_status: Mapped[ProvisioningStatus] = mapped_column(
        _enum(ProvisioningStatus, "provisioning_status"), default=ProvisioningStatus.PENDING
    )
    provisioned_at: Mapped[Optional[Instant]]
    note: Mapped[Optional[str]] = mapped_column(Text)
    created_by: Mapped[Optional[str]] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    subscription: Mapped[Subscription] = relationship(back_populates="change_logs")
    invoice_lines: Mapped[list["InvoiceLine"]] = relationship(secondary="invoice_line_lcl", viewonly=True)


class ScheduledLicenseChangeLog(Base):
    """A future change to one subscription (SPEC C1-C12)."""

    __tablename__ = "scheduled_license_change_log"
    __table_args__ = (
        # SPEC C8: at most one open (pending, awaiting merge or failed) SLCL per subscription.
        Index(
            "uq_slcl_one_open_per_subscription",
            "subscription_id",
            unique=True,
            sqlite_where=text("status IN ('pending', 'awaiting_merge', 'merge_failed')"),
            postgresql_where=text("status IN ('pending', 'awaiting_merge', 'merge_failed')"),
        ),
        Index("ix_slcl_due", "status", "scheduled_for"),
        CheckConstraint("quantity IS NULL OR quantity >= 0", name="quantity_nonneg"),
    )

    id: Mapped[intpk]
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscription.id"))
    status: Mapped[SLCLStatus] = mapped_column(_enum(SLCLStatus, "slcl_status"), default=SLCLStatus.PENDING)
    reason: Mapped[Optional[str]] = mapped_column(Text)  # why it failed to merge (SPEC C9)
    action: Mapped[SLCLAction] = mapped_column(_enum(SLCLAction, "slcl_action"), default=SLCLAction.CHANGE)
    change_effective: Mapped[ChangeEffective] = mapped_column(_enum(ChangeEffective, "change_effective"))
    # New values; NULL = unchanged.
    quantity: Mapped[Optional[int]] = mapped_column(Integer)
    selling_price: Mapped[Optional[Price]]
    cost_price: Mapped[Optional[Price]]
    sales_unit: Mapped[Optional[str]] = mapped_column(ForeignKey("unit_mapping.code"))
    # What the requester saw: re-checked against the subscription at merge time (SPEC C10).
    currency: Mapped[Currency]
    price_list: Mapped[Optional[str]] = mapped_column(String(50))
    apply_refund: Mapped[bool] = mapped_column(Boolean, default=False)
    direction: Mapped[str] = mapped_column(
        String(8), CheckConstraint("direction IN ('positive', 'negative', 'neutral')", name="direction")
    )
    effective_date: Mapped[date]
    provision_on: Mapped[date]  # SPEC C5: when it is sent to the provider
    scheduled_for: Mapped[Instant]  # SPEC S6/S7: 00:05 or 23:30 tenant time on the effective date
    bill_from: Mapped[date]
    source: Mapped[ChangeSource] = mapped_column(_enum(ChangeSource, "change_source"), default=ChangeSource.USER)
    requested_by: Mapped[Optional[str]] = mapped_column(String(100))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    merged_at: Mapped[Optional[Instant]]

    subscription: Mapped[Subscription] = relationship()


# --------------------------------------------------------------------------------------------
# Invoices


class Invoice(Base):
    """An issued invoice: immutable in the database (issue 11, SPEC M3; migration 0002).

    Triggers refuse DELETE and any UPDATE but of the bookkeeping columns ``payment_status``,
    ``amount_paid`` and ``paid_on`` (payment status from the accounting system, SPEC P2;
    ``INVOICE_BOOKKEEPING`` in the migration). Its lines and their LCL/SLCL links cannot change or
    be deleted at all, and PostgreSQL refuses TRUNCATE of them. Wiping a store is for
    administrators and tests only, through ``w365.store.admin.guards_bypassed``.
    """

    __tablename__ = "invoice"
    __table_args__ = (
        # Idempotency (Lago-style, in depth): one full-cycle and one usage invoice per contract
        # and period, one change-log invoice per contract and run date.
        Index(
            "uq_invoice_full_cycle_period",
            "contract_id",
            "period_from",
            unique=True,
            sqlite_where=text("kind = 'full_cycle'"),
            postgresql_where=text("kind = 'full_cycle'"),
        ),
        Index(
            "uq_invoice_usage_period",
            "contract_id",
            "period_from",
            unique=True,
            sqlite_where=text("kind = 'usage'"),
            postgresql_where=text("kind = 'usage'"),
        ),
        Index(
            "uq_invoice_change_log_run",
            "contract_id",
            "issue_date",
            unique=True,
            sqlite_where=text("kind = 'change_log'"),
            postgresql_where=text("kind = 'change_log'"),
        ),
        CheckConstraint("period_to >= period_from", name="period_order"),
    )

    id: Mapped[intpk]
    number: Mapped[str] = mapped_column(String(40), unique=True)
    # Gapless per series (SPEC J6, I6): invoices 1, 2, 3..., credit notes -1, -2, -3... (the
    # number is the series' prefix and |sequence|), so the one unique key holds both series.
    sequence: Mapped[int] = mapped_column(Integer, unique=True)
    contract_id: Mapped[int] = mapped_column(ForeignKey("billing_contract.id"), index=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"))
    kind: Mapped[InvoiceKind] = mapped_column(_enum(InvoiceKind, "invoice_kind"))
    currency: Mapped[Currency]
    issue_date: Mapped[date]  # the run's as-of date (SPEC J6), never the wall clock
    due_date: Mapped[date]
    period_from: Mapped[date]  # inclusive
    period_to: Mapped[date]  # inclusive
    total: Mapped[Money]  # subtotal + tax_total (SPEC I4)
    # Tax and credit notes (SPEC I4-I6; migration 0006). Invoices issued before carry tax 0, so
    # their subtotal is their total, as before; nothing issued was rewritten.
    tax_total: Mapped[Money] = mapped_column(default=Decimal("0"), server_default="0")
    document: Mapped[DocumentType] = mapped_column(
        _enum(DocumentType, "document_type"), default=DocumentType.INVOICE, server_default=DocumentType.INVOICE.value
    )
    corrects_invoice_id: Mapped[Optional[int]] = mapped_column(ForeignKey("invoice.id"))  # a credit note's invoice
    tax_exempt_reference: Mapped[Optional[str]] = mapped_column(String(100))  # the customer's, when issued
    payment_status: Mapped[PaymentStatus] = mapped_column(
        _enum(PaymentStatus, "payment_status"), default=PaymentStatus.UNPAID
    )
    amount_paid: Mapped[Money] = mapped_column(default=Decimal("0"))
    paid_on: Mapped[Optional[date]]
    created_by_job: Mapped[Optional[str]] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    contract: Mapped[BillingContract] = relationship()
    customer: Mapped[Customer] = relationship()
    lines: Mapped[list["InvoiceLine"]] = relationship(back_populates="invoice", order_by="InvoiceLine.line_no")

    @property
    def subtotal(self) -> Decimal:
        """The sum of the lines' amounts, before tax (SPEC I4)."""
        return self.total - self.tax_total


class InvoiceLine(Base):
    """What one line bills (SPEC M3). ``amount`` = round_half_up(quantity x unit_price x days /
    period_days) in the invoice currency, so every amount can be recomputed from the line.
    Immutable once written: no column may change, no line be deleted (issue 11, see ``Invoice``)."""

    __tablename__ = "invoice_line"
    __table_args__ = (
        UniqueConstraint("invoice_id", "line_no"),
        # First billing of a subscription's days: never twice for the same day and price.
        Index(
            "uq_invoice_line_recurring",
            "subscription_id",
            "period_from",
            "unit_price",
            unique=True,
            sqlite_where=text("kind = 'recurring'"),
            postgresql_where=text("kind = 'recurring'"),
        ),
        Index(
            "uq_invoice_line_one_time",
            "subscription_id",
            unique=True,
            sqlite_where=text("kind = 'one_time'"),
            postgresql_where=text("kind = 'one_time'"),
        ),
        Index("ix_invoice_line_subscription", "subscription_id", "billing_period_from"),
        CheckConstraint("period_to >= period_from", name="period_order"),
        CheckConstraint("days >= 0 AND period_days > 0 AND days <= period_days", name="days_in_period"),
    )

    id: Mapped[intpk]
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoice.id"))
    line_no: Mapped[int] = mapped_column(Integer)
    subscription_id: Mapped[Optional[int]] = mapped_column(ForeignKey("subscription.id"))
    kind: Mapped[InvoiceLineKind] = mapped_column(_enum(InvoiceLineKind, "invoice_line_kind"))
    description: Mapped[str] = mapped_column(String(300))
    billing_period_from: Mapped[date]  # the contract period this line belongs to
    billing_period_to: Mapped[date]  # inclusive
    period_from: Mapped[date]  # the days billed, inclusive
    period_to: Mapped[date]
    quantity: Mapped[Quantity]
    unit_price: Mapped[Price]  # per billing period, invoice currency
    days: Mapped[int] = mapped_column(Integer)
    period_days: Mapped[int] = mapped_column(Integer)
    proration_factor: Mapped[Decimal] = mapped_column(ExactDecimal(12, 10))
    amount: Mapped[Money]
    sales_unit: Mapped[Optional[str]] = mapped_column(String(24))
    source_currency: Mapped[Optional[str]] = mapped_column(String(3))  # when converted (SPEC S1)
    fx_rate: Mapped[Optional[Rate]]
    # Tax (SPEC I4; migration 0006): the code (None: untaxed), its rate in percent on the line's
    # first day billed, and round_half_up(amount x rate / 100). Lines issued before: 0, no code.
    tax_code: Mapped[Optional[str]] = mapped_column(String(24))
    tax_rate: Mapped[TaxPercent] = mapped_column(default=Decimal("0"), server_default="0")
    tax_amount: Mapped[Money] = mapped_column(default=Decimal("0"), server_default="0")

    invoice: Mapped[Invoice] = relationship(back_populates="lines")
    lcls: Mapped[list[LicenseChangeLog]] = relationship(secondary="invoice_line_lcl", viewonly=True)
    slcls: Mapped[list[ScheduledLicenseChangeLog]] = relationship(secondary="invoice_line_slcl", viewonly=True)


class InvoiceLineLCL(Base):
    """Which LCLs a line reflects; an LCL's "invoiced by" (SPEC M3, S2). Immutable (issue 11)."""

    __tablename__ = "invoice_line_lcl"

    invoice_line_id: Mapped[int] = mapped_column(ForeignKey("invoice_line.id"), primary_key=True)
    lcl_id: Mapped[int] = mapped_column(ForeignKey("license_change_log.id"), primary_key=True, index=True)


class InvoiceLineSLCL(Base):
    """Which scheduled changes a line billed ahead of their merge (SPEC C11, C12). Immutable (issue 11)."""

    __tablename__ = "invoice_line_slcl"

    invoice_line_id: Mapped[int] = mapped_column(ForeignKey("invoice_line.id"), primary_key=True)
    slcl_id: Mapped[int] = mapped_column(ForeignKey("scheduled_license_change_log.id"), primary_key=True, index=True)


# --------------------------------------------------------------------------------------------
# Usage, alerts, metrics, incentives, job exceptions


class UsageRecord(Base):
    __tablename__ = "usage_record"
    __table_args__ = (
        UniqueConstraint("kind", "subscription_id", "usage_date", "meter_id"),
        Index("ix_usage_record_day", "kind", "usage_date"),
    )

    id: Mapped[intpk]
    kind: Mapped[UsageKind] = mapped_column(_enum(UsageKind, "usage_kind"))
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscription.id"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"))
    usage_date: Mapped[date]
    meter_id: Mapped[str] = mapped_column(String(64))
    meter_name: Mapped[Optional[str]] = mapped_column(String(200))
    unit: Mapped[Optional[str]] = mapped_column(String(50))
    quantity: Mapped[Quantity]
    unit_price: Mapped[Price]  # provider's price (our cost)
    pre_tax_total: Mapped[Money]
    currency: Mapped[Currency]
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)


class AlertSent(Base):
    """Alerts already sent, so a daily job never sends the same one twice."""

    __tablename__ = "alert_sent"
    __table_args__ = (UniqueConstraint("kind", "dedup_key"),)

    id: Mapped[intpk]
    kind: Mapped[str] = mapped_column(String(50))
    dedup_key: Mapped[str] = mapped_column(String(200))
    recipient: Mapped[Optional[str]] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[Optional[str]] = mapped_column(Text)
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)


class IncentivePlan(Base):
    __tablename__ = "incentive_plan"
    __table_args__ = (UniqueConstraint("salesperson", "period_from", "currency"),)

    id: Mapped[intpk]
    salesperson: Mapped[str] = mapped_column(String(100))
    period_from: Mapped[date]
    period_to: Mapped[date]
    currency: Mapped[Currency]
    revenue: Mapped[Money]
    cost: Mapped[Money]
    margin: Mapped[Money]
    commission_rate: Mapped[Decimal] = mapped_column(ExactDecimal(9, 6))
    commission: Mapped[Money]
    invoice_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ContractMetricSnapshot(Base):
    __tablename__ = "contract_metric_snapshot"
    __table_args__ = (UniqueConstraint("contract_id", "as_of"),)

    id: Mapped[intpk]
    contract_id: Mapped[int] = mapped_column(ForeignKey("billing_contract.id"))
    as_of: Mapped[date]
    currency: Mapped[Currency]
    mrr: Mapped[Money]
    acv: Mapped[Money]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobException(Base):
    """A record a job skipped, and why (bad contract data, quarantined provider record, ...).
    Upserted per (job, as_of, entity), so a rerun reports the same list instead of a longer one."""

    __tablename__ = "job_exception"
    __table_args__ = (UniqueConstraint("job", "as_of", "entity_type", "entity_key"),)

    id: Mapped[intpk]
    job: Mapped[str] = mapped_column(String(100))
    as_of: Mapped[date]
    entity_type: Mapped[str] = mapped_column(String(50))
    entity_key: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class InvoiceDelivery(Base):
    """How an issued invoice went out on one channel (issue 16, I22-I25; migration 0007): at most
    one record per invoice and channel, so an invoice is sent once unless someone resends it.

    Sending never touches the invoice row (it is immutable, migration 0002): all delivery state
    lives here. ``status`` is ``sending`` from the moment a send is claimed (committed with the
    ``message_id`` the message will carry) until the outcome is committed: a record still
    ``sending`` after a crash tells the next run the message may have left (at-most-once, I24).
    """

    __tablename__ = "invoice_delivery"
    __table_args__ = (
        UniqueConstraint("invoice_id", "channel"),
        CheckConstraint("attempts >= 0", name="attempts_nonneg"),
    )

    id: Mapped[intpk]
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoice.id"))
    channel: Mapped[DeliveryChannel] = mapped_column(_enum(DeliveryChannel, "delivery_channel"))
    status: Mapped[DeliveryStatus] = mapped_column(_enum(DeliveryStatus, "delivery_status"))
    recipient: Mapped[Optional[str]] = mapped_column(String(320))  # the addresses, or the system's name
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # sends tried, resends included
    sends: Mapped[int] = mapped_column(Integer, default=0)  # sends that succeeded (1, more after --resend)
    last_error: Mapped[Optional[str]] = mapped_column(Text)
    message_id: Mapped[Optional[str]] = mapped_column(String(255))  # the e-mail's Message-ID, or the system's reference
    sent_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
