"""invoice delivery: billing e-mail and delivery records

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30

Issue 16, delivery (I20-I29):

* ``customer.billing_email``: where the customer's invoices are e-mailed (one or more addresses,
  comma-separated); NULL for every existing customer (no e-mail until someone sets it). Added in
  place (``ALTER TABLE ... ADD COLUMN``), never by a batch copy-and-move of ``customer``, which
  every contract and invoice references (see 0003).
* ``invoice_delivery``: one record per invoice and channel (e-mail, accounting system) with its
  status, attempts, last error, sent-at and message id. A new table: no guard trigger of 0002
  covers it, and no invoice row is read or changed; an invoice's delivery state lives here, so
  the immutable invoice stays as issued.

The downgrade drops the table and the column (the record of what was sent goes with them).
"""
import sqlalchemy as sa
from alembic import op

import w365.store.types


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("customer", sa.Column("billing_email", sa.String(length=320), nullable=True))
    op.create_table(
        "invoice_delivery",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.Enum("email", "accounting", name="delivery_channel", native_enum=False, create_constraint=True,
                                     length=24), nullable=False),
        sa.Column("status", sa.Enum("sending", "sent", "failed", name="delivery_status", native_enum=False, create_constraint=True,
                                    length=24), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("sends", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("message_id", sa.String(length=255), nullable=True),
        sa.Column("sent_at", w365.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", w365.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_invoice_delivery_attempts_nonneg")),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoice.id"], name=op.f("fk_invoice_delivery_invoice_id_invoice")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_delivery")),
        sa.UniqueConstraint("invoice_id", "channel", name=op.f("uq_invoice_delivery_invoice_id_channel")),
    )


def downgrade() -> None:
    op.drop_table("invoice_delivery")
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and bind.dialect.dbapi is not None and bind.dialect.dbapi.sqlite_version_info < (3, 35, 0):
        with op.batch_alter_table("customer") as batch:
            batch.drop_column("billing_email")
        return
    op.drop_column("customer", "billing_email")
