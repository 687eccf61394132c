"""portal tokens expire and can be revoked

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

Issue 12 (SPEC C13): ``customer.portal_token_expires_at`` (when the customer's portal token stops
working) and ``customer.portal_token_revoked_at`` (``w365 portal revoke``; the hash is kept so the
portal can answer "revoked" rather than "unknown token").

Tokens issued before this revision had no expiry: the upgrade gives each of them
``EXISTING_TOKEN_DAYS`` (the default lifetime of a new token) from the moment of the upgrade, so
none stays valid forever and no customer is cut off by the upgrade itself. No other row or
column changes.

Both columns are added and dropped in place (``ALTER TABLE ... ADD/DROP COLUMN``), never by a
batch copy-and-move: on SQLite that would rebuild ``customer``. ``customer`` carries no guard
triggers (0001 and 0002 guard the invoice tables and the LCL only; on PostgreSQL the TRUNCATE
guards are statement triggers on those tables), but a rebuild is a needless risk for a table
that every contract and invoice references. SQLite drops a column in place from 3.35 on; older
SQLite falls back to the batch rebuild.
"""
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from alembic import op

import w365.store.types


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

EXISTING_TOKEN_DAYS = 90  # w365.interfaces.portal.DEFAULT_TOKEN_DAYS when this revision was written
COLUMNS = ("portal_token_expires_at", "portal_token_revoked_at")


def upgrade() -> None:
    for name in COLUMNS:
        op.add_column("customer", sa.Column(name, w365.store.types.UTCDateTime(timezone=True), nullable=True))
    customer = sa.table(
        "customer",
        sa.column("portal_token_hash", sa.String(64)),
        sa.column("portal_token_expires_at", w365.store.types.UTCDateTime(timezone=True)),
    )
    expires = datetime.now(timezone.utc) + timedelta(days=EXISTING_TOKEN_DAYS)
    op.execute(
        customer.update()
        .where(customer.c.portal_token_hash.is_not(None))
        .values(portal_token_expires_at=expires)
    )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and bind.dialect.dbapi is not None and bind.dialect.dbapi.sqlite_version_info < (3, 35, 0):
        with op.batch_alter_table("customer") as batch:
            for name in reversed(COLUMNS):
                batch.drop_column(name)
        return
    for name in reversed(COLUMNS):
        op.drop_column("customer", name)
