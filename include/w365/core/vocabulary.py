"""The domain's words: every status, kind and action w365 stores or accepts, in one vocabulary.

Each is a :class:`Word`, a string enum that is also its value in every way a program can tell:
``SubscriptionStatus.ACTIVE == "active"``, it hashes like ``"active"`` (so dicts and sets keyed
by either find both), prints and serialises as ``active``. The store's columns hold these enums;
the pure core, the CLI, the pages and JSON speak the same values, with no bridging between them.
"""

from __future__ import annotations

import enum


class Word(enum.StrEnum):
    """A str enum that behaves as its value (``enum.StrEnum`` hashes by name; this by value)."""

    __hash__ = str.__hash__


class ProviderKind(Word):
    PARTNER_CENTER = "partner_center"
    MANUAL = "manual"
    FILE = "file"


class ProductKind(Word):
    LICENSE = "license"
    USAGE = "usage"
    ONE_TIME = "one_time"


class QRB(Word):
    """Quantity Reduction Behaviour (SPEC C2)."""

    ALLOWED = "allowed"
    DISALLOWED = "disallowed"
    WINDOW = "window"


class ChangeBilling(Word):
    """When mid-cycle changes are invoiced (SPEC B4)."""

    IMMEDIATE = "immediate"
    NEXT_CYCLE = "next_cycle"


class ContractStatus(Word):
    ACTIVE = "active"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class SubscriptionStatus(Word):
    PENDING = "pending"  # created, not yet active (no billing)
    ACTIVE = "active"
    SUSPENDED = "suspended"
    DEACTIVATED = "deactivated"


class LCLKind(Word):
    STANDARD = "standard"
    AUDIT = "audit"


class ChangeType(Word):
    ACTIVATION = "activation"
    QUANTITY = "quantity"
    PRICE = "price"
    QUANTITY_PRICE = "quantity_price"
    DEACTIVATION = "deactivation"
    SUSPENSION = "suspension"
    REACTIVATION = "reactivation"


class ChangeSource(Word):
    USER = "user"
    PROVIDER = "provider"
    SLCL = "slcl"
    PORTAL = "portal"
    IMPORT = "import"
    RENEWAL = "renewal"
    SYSTEM = "system"


class ProvisioningStatus(Word):
    PENDING = "pending"  # awaiting provisioning at the provider
    PROVISIONED = "provisioned"
    NOT_REQUIRED = "not_required"
    FAILED = "failed"


class SLCLStatus(Word):
    """SPEC C9 (decision): Pending = scheduled, not yet billed; Awaiting Merge = already billed
    on an invoice and waiting for its effective date; Archived = merged; Merge Failed = a check
    failed at merge time (retryable); Cancelled = withdrawn by an operator."""

    PENDING = "pending"
    AWAITING_MERGE = "awaiting_merge"
    MERGE_FAILED = "merge_failed"
    ARCHIVED = "archived"
    CANCELLED = "cancelled"


OPEN_SLCL_STATUSES = (SLCLStatus.PENDING, SLCLStatus.AWAITING_MERGE, SLCLStatus.MERGE_FAILED)


class SLCLAction(Word):
    CHANGE = "change"  # quantity and/or price
    ACTIVATE = "activate"  # also a scheduled reactivation of a suspended subscription
    DEACTIVATE = "deactivate"
    SUSPEND = "suspend"  # issue 13 (migration 0004): a suspension scheduled for a future date


class ChangeEffective(Word):
    IMMEDIATELY = "immediately"
    CUSTOM = "custom"
    ON_RENEWAL = "on_renewal"


class InvoiceKind(Word):
    FULL_CYCLE = "full_cycle"
    CHANGE_LOG = "change_log"
    USAGE = "usage"


class DocumentType(Word):
    """What an issued document is (SPEC I6): an invoice, or a credit note (a document whose total
    is negative), each with its own gapless number series."""

    INVOICE = "invoice"
    CREDIT_NOTE = "credit_note"


class InvoiceLineKind(Word):
    RECURRING = "recurring"  # first billing of a subscription's days in a period
    ADJUSTMENT = "adjustment"  # a delta (charge or credit) for days billed before
    ONE_TIME = "one_time"  # NRI: once, never prorated
    USAGE = "usage"


class PaymentStatus(Word):
    UNPAID = "unpaid"
    PARTIALLY_PAID = "partially_paid"
    PAID = "paid"


class UsageKind(Word):
    INTERIM = "interim"  # daily, not billed
    FINAL = "final"  # billable


# --------------------------------------------------------------------------------------------
# Tenant and reference data


class DeliveryChannel(Word):
    """Where an issued invoice goes out (issue 16, I20-I29): the customer's billing e-mail, and
    the accounting system (REST or file drop)."""

    EMAIL = "email"
    ACCOUNTING = "accounting"


class DeliveryStatus(Word):
    """A delivery record's state (I22). ``sending`` is committed before the message leaves, so a
    crash after the SMTP server accepted it is seen by the next run, which does not send again."""

    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
