"""initial billing schema

Revision ID: 0001
Revises:
Create Date: 2026-11-21

The whole domain (SPEC S1-S9, B1-B5, C1-C13, M1-M3), the reference units of SPEC B1, the single
tenant row (time zone UTC until set, SPEC S4) and the triggers that keep the License Change Log
append-only (SPEC S3) and issued invoice lines immutable, on SQLite and PostgreSQL.
"""
from alembic import op
import sqlalchemy as sa
import w365.store.types


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('alert_sent',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=50), nullable=False),
    sa.Column('dedup_key', sa.String(length=200), nullable=False),
    sa.Column('recipient', sa.String(length=200), nullable=True),
    sa.Column('subject', sa.String(length=300), nullable=False),
    sa.Column('body', sa.Text(), nullable=True),
    sa.Column('sent_at', w365.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_sent')),
    sa.UniqueConstraint('kind', 'dedup_key', name=op.f('uq_alert_sent_kind_dedup_key'))
    )
    op.create_table('customer',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('provider_tenant_id', sa.String(length=64), nullable=True),
    sa.Column('email', sa.String(length=200), nullable=True),
    sa.Column('salesperson', sa.String(length=100), nullable=True),
    sa.Column('portal_token_hash', sa.String(length=64), nullable=True),
    sa.Column('created_at', w365.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer')),
    sa.UniqueConstraint('portal_token_hash', name=op.f('uq_customer_portal_token_hash')),
    sa.UniqueConstraint('provider_tenant_id', name=op.f('uq_customer_provider_tenant_id'))
    )
    op.create_table('exchange_rate',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('from_currency', sa.String(length=3), nullable=False),
    sa.Column('to_currency', sa.String(length=3), nullable=False),
    sa.Column('rate', w365.store.types.ExactDecimal(precision=18, scale=8), nullable=False),
    sa.Column('effective_from', sa.Date(), nullable=False),
    sa.CheckConstraint('CAST(rate AS NUMERIC) > 0', name=op.f('ck_exchange_rate_rate_positive')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exchange_rate')),
    sa.UniqueConstraint('from_currency', 'to_currency', 'effective_from', name=op.f('uq_exchange_rate_from_currency_to_currency_effective_from'))
    )
    op.create_table('incentive_plan',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('salesperson', sa.String(length=100), nullable=False),
    sa.Column('period_from', sa.Date(), nullable=False),
    sa.Column('period_to', sa.Date(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('revenue', w365.store.types.ExactDecimal(precision=18, scale=4), nullable=False),
    sa.Column('cost', w365.store.types.ExactDecimal(precision=18, scale=4), nullable=False),
    sa.Column('margin', w365.store.types.ExactDecimal(precision=18, scale=4), nullable=False),
    sa.Column('commission_rate', w365.store.types.ExactDecimal(precision=9, scale=6), nullable=False),
    sa.Column('commission', w365.store.types.ExactDecimal(precision=18, scale=4), nullable=False),
    sa.Column('invoice_count', sa.Integer(), nullable=False),
    sa.Column('created_at', w365.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_incentive_plan')),
    sa.UniqueConstraint('salesperson', 'period_from', 'currency', name=op.f('uq_incentive_plan_salesperson_period_from_currency'))
    )
    op.create_table('job_exception',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('job', sa.String(length=100), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('entity_type', sa.String(length=50), nullable=False),
    sa.Column('entity_key', sa.String(length=200), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('created_at', w365.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_exception')),
    sa.UniqueConstraint('job', 'as_of', 'entity_type', 'entity_key', name=op.f('uq_job_exception_job_as_of_entity_type_entity_key'))
    )
    op.create_table('provider',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.Enum('partner_center', 'manual', 'file', name='provider_kind', native_enum=False, create_constraint=True, length=24), nullable=False),
    sa.Column('connection_id', sa.String(length=100), nullable=True),
    sa.Column('alert_email', sa.String(length=200), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_provider')),
    sa.UniqueConstraint('name', name=op.f('uq_provider_name'))
    )
    op.create_table('tenant',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('time_zone', sa.String(length=64), server_default='UTC', nullable=False),
    sa.Column('invoice_prefix', sa.String(length=20), server_default='INV-', nullable=False),
    sa.Column('next_invoice_number', sa.Integer(), server_default='1', nullable=False),
    sa.Column('created_at', w365.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('id = 1', name=op.f('ck_tenant_single_row')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tenant'))
    )
    op.create_table('unit_mapping',
    sa.Column('code', sa.String(length=24), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('months', sa.Integer(), nullable=True),
    sa.CheckConstraint('months IS NULL OR months > 0', name=op.f('ck_unit_mapping_months_positive')),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_unit_mapping'))
    )
    op.create_table('billing_contract',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('number', sa.String(length=50), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('frequency', sa.String(length=24), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('start_date', sa.Date(), nullable=False),
    sa.Column('end_date', sa.Date(), nullable=True),
    sa.Column('term_months', sa.Integer(), nullable=True),
    sa.Column('next_invoice_date', sa.Date(), nullable=True),
    sa.Column('billed_from', sa.Date(), nullable=True),
    sa.Column('auto_renew', sa.Boolean(), nullable=False),
    sa.Column('refunds_allowed', sa.Boolean(), nullable=False),
    sa.Column('change_billing', sa.Enum('immediate', 'next_cycle', name='change_billing', native_enum=False, create_constraint=True, length=24), nullable=False),
    sa.Column('status', sa.Enum('active', 'expired', 'cancelled', name='contract_status', native_enum=False, create_constraint=True, length=24), nullable=False),
    sa.Column('price_list', sa.String(length=50), nullable=False),
    sa.Column('last_renewed_on', sa.Date(), nullable=True),
    sa.Column('payment_terms_days', sa.Integer(), nullable=False),
    sa.Column('salesperson', sa.String(length=100), nullable=True),
    sa.Column('mrr', w365.store.types.ExactDecimal(precision=18, scale=4), nullable=True),
    sa.Column('acv', w365.store.types.ExactDecimal(precision=18, scale=4), nullable=True),
    sa.Column('metrics_as_of', sa.Date(), nullable=True),
    sa.Column('created_at', w365.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('end_date IS NULL OR end_date >= start_date', name=op.f('ck_billing_contract_end_after_start')),
    sa.CheckConstraint('term_months IS NULL OR term_months > 0', name=op.f('ck_billing_contract_term_positive')),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_billing_contract_customer_id_customer')),
    sa.ForeignKeyConstraint(['frequency'], ['unit_mapping.code'], name=op.f('fk_billing_contract_frequency_unit_mapping')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_contract')),
    sa.UniqueConstraint('id', 'customer_id', name='id_customer'),
    sa.UniqueConstraint('number', name=op.f('uq_billing_contract_number'))
    )
    with op.batch_alter_table('billing_contract', schema=None) as batch_op:
        batch_op.create_index('ix_billing_contract_due', ['status', 'next_invoice_date'], unique=False)

    op.create_table('product',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('sku', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.Enum('license', 'usage', 'one_time', name='product_kind', native_enum=False, create_constraint=True, length=24), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=True),
    sa.Column('offer_id', sa.String(length=100), nullable=True),
    sa.Column('default_qrb', sa.Enum('allowed', 'disallowed', 'window', name='qrb', native_enum=False, create_constraint=True, length=24), nullable=False),
    sa.Column('default_qrw_days', sa.Integer(), nullable=True),
    sa.CheckConstraint('default_qrw_days IS NULL OR default_qrw_days >= 0', name=op.f('ck_product_qrw_nonneg')),
    sa.ForeignKeyConstraint(['provider_id'], ['provider.id'], name=op.f('fk_product_provider_id_provider')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_product')),
    sa.UniqueConstraint('sku', name=op.f('uq_product_sku'))
    )
    with op.batch_alter_table('product', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_product_offer_id'), ['offer_id'], unique=False)

    op.create_table('contract_metric_snapshot',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('contract_id', sa.Integer(), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('mrr', w365.store.types.ExactDecimal(precision=18, scale=4), nullable=False),
    sa.Column('acv', w365.store.types.ExactDecimal(precision=18, scale=4), nullable=False),
    sa.Column('created_at', w365.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['contract_id'], ['billing_contract.id'], name=op.f('fk_contract_metric_snapshot_contract_id_billing_contract')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contract_metric_snapshot')),
    sa.UniqueConstraint('contract_id', 'as_of', name=op.f('uq_contract_metric_snapshot_contract_id_as_of'))
    )
    op.create_table('invoice',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('number', sa.String(length=40), nullable=False),
    sa.Column('sequence', sa.Integer(), nullable=False),
    sa.Column('contract_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('full_cycle', 'change_log', 'usage', name='invoice_kind', native_enum=False, create_constraint=True, length=24), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('issue_date', sa.Date(), nullable=False),
    sa.Column('due_date', sa.Date(), nullable=False),
    sa.Column('period_from', sa.Date(), nullable=False),
    sa.Column('period_to', sa.Date(), nullable=False),
    sa.Column('total', w365.store.types.ExactDecimal(precision=18, scale=4), nullable=False),
    sa.Column('payment_status', sa.Enum('unpaid', 'partially_paid', 'paid', name='payment_status', native_enum=False, create_constraint=True, length=24), nullable=False),
    sa.Column('amount_paid', w365.store.types.ExactDecimal(precision=18, scale=4), nullable=False),
    sa.Column('paid_on', sa.Date(), nullable=True),
    sa.Column('created_by_job', sa.String(length=100), nullable=True),
    sa.Column('created_at', w365.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('period_to >= period_from', name=op.f('ck_invoice_period_order')),
    sa.ForeignKeyConstraint(['contract_id'], ['billing_contract.id'], name=op.f('fk_invoice_contract_id_billing_contract')),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_invoice_customer_id_customer')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invoice')),
    sa.UniqueConstraint('number', name=op.f('uq_invoice_number')),
    sa.UniqueConstraint('sequence', name=op.f('uq_invoice_sequence'))
    )
    with op.batch_alter_table('invoice', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_invoice_contract_id'), ['contract_id'], unique=False)
        batch_op.create_index('uq_invoice_change_log_run', ['contract_id', 'issue_date'], unique=True, sqlite_where=sa.text("kind = 'change_log'"), postgresql_where=sa.text("kind = 'change_log'"))
        batch_op.create_index('uq_invoice_full_cycle_period', ['contract_id', 'period_from'], unique=True, sqlite_where=sa.text("kind = 'full_cycle'"), postgresql_where=sa.text("kind = 'full_cycle'"))
        batch_op.create_index('uq_invoice_usage_period', ['contract_id', 'period_from'], unique=True, sqlite_where=sa.text("kind = 'usage'"), postgresql_where=sa.text("kind = 'usage'"))

    op.create_table('product_price',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('product_id', sa.Integer(), nullable=False),
    sa.Column('price_list', sa.String(length=50), nullable=False),
    sa.Column('sales_unit', sa.String(length=24), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('cost_price', w365.store.types.ExactDecimal(precision=18, scale=6), nullable=False),
    sa.Column('selling_price', w365.store.types.ExactDecimal(precision=18, scale=6), nullable=False),
    sa.Column('effective_from', sa.Date(), nullable=False),
    sa.Column('created_at', w365.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('CAST(selling_price AS NUMERIC) >= 0 AND CAST(cost_price AS NUMERIC) >= 0', name=op.f('ck_product_price_prices_nonneg')),
    sa.ForeignKeyConstraint(['product_id'], ['product.id'], name=op.f('fk_product_price_product_id_product')),
    sa.ForeignKeyConstraint(['sales_unit'], ['unit_mapping.code'], name=op.f('fk_product_price_sales_unit_unit_mapping')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_product_price')),
    sa.UniqueConstraint('product_id', 'price_list', 'sales_unit', 'currency', 'effective_from', name=op.f('uq_product_price_product_id_price_list_sales_unit_currency_effective_from'))
    )
    op.create_table('subscription',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('product_id', sa.Integer(), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('contract_id', sa.Integer(), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('selling_price', w365.store.types.ExactDecimal(precision=18, scale=6), nullable=False),
    sa.Column('cost_price', w365.store.types.ExactDecimal(precision=18, scale=6), nullable=False),
    sa.Column('sales_unit', sa.String(length=24), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('price_list', sa.String(length=50), nullable=False),
    sa.Column('status', sa.Enum('pending', 'active', 'suspended', 'deactivated', name='subscription_status', native_enum=False, create_constraint=True, length=24), nullable=False),
    sa.Column('qrb', sa.Enum('allowed', 'disallowed', 'window', name='qrb', native_enum=False, create_constraint=True, length=24), nullable=False),
    sa.Column('qrw_days', sa.Integer(), nullable=True),
    sa.Column('provider_subscription_id', sa.String(length=64), nullable=True),
    sa.Column('start_date', sa.Date(), nullable=False),
    sa.Column('provisioned_on', sa.Date(), nullable=True),
    sa.Column('usage_threshold', w365.store.types.ExactDecimal(precision=18, scale=4), nullable=True),
    sa.Column('markup_pct', w365.store.types.ExactDecimal(precision=9, scale=4), nullable=False),
    sa.Column('created_at', w365.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', w365.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('CAST(selling_price AS NUMERIC) >= 0 AND CAST(cost_price AS NUMERIC) >= 0', name=op.f('ck_subscription_prices_nonneg')),
    sa.CheckConstraint('qrw_days IS NULL OR qrw_days >= 0', name=op.f('ck_subscription_qrw_nonneg')),
    sa.CheckConstraint('quantity >= 0', name=op.f('ck_subscription_quantity_nonneg')),
    sa.ForeignKeyConstraint(['contract_id', 'customer_id'], ['billing_contract.id', 'billing_contract.customer_id'], name='fk_subscription_contract_customer'),
    sa.ForeignKeyConstraint(['contract_id'], ['billing_contract.id'], name=op.f('fk_subscription_contract_id_billing_contract')),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_subscription_customer_id_customer')),
    sa.ForeignKeyConstraint(['product_id'], ['product.id'], name=op.f('fk_subscription_product_id_product')),
    sa.ForeignKeyConstraint(['provider_id'], ['provider.id'], name=op.f('fk_subscription_provider_id_provider')),
    sa.ForeignKeyConstraint(['sales_unit'], ['unit_mapping.code'], name=op.f('fk_subscription_sales_unit_unit_mapping')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subscription')),
    sa.UniqueConstraint('provider_subscription_id', name=op.f('uq_subscription_provider_subscription_id'))
    )
    with op.batch_alter_table('subscription', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subscription_contract_id'), ['contract_id'], unique=False)

    op.create_table('invoice_line',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('invoice_id', sa.Integer(), nullable=False),
    sa.Column('line_no', sa.Integer(), nullable=False),
    sa.Column('subscription_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.Enum('recurring', 'adjustment', 'one_time', 'usage', name='invoice_line_kind', native_enum=False, create_constraint=True, length=24), nullable=False),
    sa.Column('description', sa.String(length=300), nullable=False),
    sa.Column('billing_period_from', sa.Date(), nullable=False),
    sa.Column('billing_period_to', sa.Date(), nullable=False),
    sa.Column('period_from', sa.Date(), nullable=False),
    sa.Column('period_to', sa.Date(), nullable=False),
    sa.Column('quantity', w365.store.types.ExactDecimal(precision=18, scale=6), nullable=False),
    sa.Column('unit_price', w365.store.types.ExactDecimal(precision=18, scale=6), nullable=False),
    sa.Column('days', sa.Integer(), nullable=False),
    sa.Column('period_days', sa.Integer(), nullable=False),
    sa.Column('proration_factor', w365.store.types.ExactDecimal(precision=12, scale=10), nullable=False),
    sa.Column('amount', w365.store.types.ExactDecimal(precision=18, scale=4), nullable=False),
    sa.Column('sales_unit', sa.String(length=24), nullable=True),
    sa.Column('source_currency', sa.String(length=3), nullable=True),
    sa.Column('fx_rate', w365.store.types.ExactDecimal(precision=18, scale=8), nullable=True),
    sa.CheckConstraint('days >= 0 AND period_days > 0 AND days <= period_days', name=op.f('ck_invoice_line_days_in_period')),
    sa.CheckConstraint('period_to >= period_from', name=op.f('ck_invoice_line_period_order')),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoice.id'], name=op.f('fk_invoice_line_invoice_id_invoice')),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscription.id'], name=op.f('fk_invoice_line_subscription_id_subscription')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invoice_line')),
    sa.UniqueConstraint('invoice_id', 'line_no', name=op.f('uq_invoice_line_invoice_id_line_no'))
    )
    with op.batch_alter_table('invoice_line', schema=None) as batch_op:
        batch_op.create_index('ix_invoice_line_subscription', ['subscription_id', 'billing_period_from'], unique=False)
        batch_op.create_index('uq_invoice_line_one_time', ['subscription_id'], unique=True, sqlite_where=sa.text("kind = 'one_time'"), postgresql_where=sa.text("kind = 'one_time'"))
        batch_op.create_index('uq_invoice_line_recurring', ['subscription_id', 'period_from', 'unit_price'], unique=True, sqlite_where=sa.text("kind = 'recurring'"), postgresql_where=sa.text("kind = 'recurring'"))

    op.create_table('scheduled_license_change_log',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('subscription_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('pending', 'awaiting_merge', 'merge_failed', 'archived', 'cancelled', name='slcl_status', native_enum=False, create_constraint=True, length=24), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('action', sa.Enum('change', 'activate', 'deactivate', name='slcl_action', native_enum=False, create_constraint=True, length=24), nullable=False),
    sa.Column('change_effective', sa.Enum('immediately', 'custom', 'on_renewal', name='change_effective', native_enum=False, create_constraint=True, length=24), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=True),
    sa.Column('selling_price', w365.store.types.ExactDecimal(precision=18, scale=6), nullable=True),
    sa.Column('cost_price', w365.store.types.ExactDecimal(precision=18, scale=6), nullable=True),
    sa.Column('sales_unit', sa.String(length=24), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('price_list', sa.String(length=50), nullable=True),
    sa.Column('apply_refund', sa.Boolean(), nullable=False),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('effective_date', sa.Date(), nullable=False),
    sa.Column('provision_on', sa.Date(), nullable=False),
    sa.Column('scheduled_for', w365.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('bill_from', sa.Date(), nullable=False),
    sa.Column('source', sa.Enum('user', 'provider', 'slcl', 'portal', 'import', 'renewal', 'system', name='change_source', native_enum=False, create_constraint=True, length=24), nullable=False),
    sa.Column('requested_by', sa.String(length=100), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', w365.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', w365.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('merged_at', w365.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint('quantity IS NULL OR quantity >= 0', name=op.f('ck_scheduled_license_change_log_quantity_nonneg')),
    sa.ForeignKeyConstraint(['sales_unit'], ['unit_mapping.code'], name=op.f('fk_scheduled_license_change_log_sales_unit_unit_mapping')),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscription.id'], name=op.f('fk_scheduled_license_change_log_subscription_id_subscription')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scheduled_license_change_log'))
    )
    with op.batch_alter_table('scheduled_license_change_log', schema=None) as batch_op:
        batch_op.create_index('ix_slcl_due', ['status', 'scheduled_for'], unique=False)
        batch_op.create_index('uq_slcl_one_open_per_subscription', ['subscription_id'], unique=True, sqlite_where=sa.text("status IN ('pending', 'awaiting_merge', 'merge_failed')"), postgresql_where=sa.text("status IN ('pending', 'awaiting_merge', 'merge_failed')"))

    op.create_table('usage_record',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.Enum('interim', 'final', name='usage_kind', native_enum=False, create_constraint=True, length=24), nullable=False),
    sa.Column('subscription_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('usage_date', sa.Date(), nullable=False),
    sa.Column('meter_id', sa.String(length=64), nullable=False),
    sa.Column('meter_name', sa.String(length=200), nullable=True),
    sa.Column('unit', sa.String(length=50), nullable=True),
    sa.Column('quantity', w365.store.types.ExactDecimal(precision=18, scale=6), nullable=False),
    sa.Column('unit_price', w365.store.types.ExactDecimal(precision=18, scale=6), nullable=False),
    sa.Column('pre_tax_total', w365.store.types.ExactDecimal(precision=18, scale=4), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('synced_at', w365.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_usage_record_customer_id_customer')),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscription.id'], name=op.f('fk_usage_record_subscription_id_subscription')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_usage_record')),
    sa.UniqueConstraint('kind', 'subscription_id', 'usage_date', 'meter_id', name=op.f('uq_usage_record_kind_subscription_id_usage_date_meter_id'))
    )
    with op.batch_alter_table('usage_record', schema=None) as batch_op:
        batch_op.create_index('ix_usage_record_day', ['kind', 'usage_date'], unique=False)

    op.create_table('invoice_line_slcl',
    sa.Column('invoice_line_id', sa.Integer(), nullable=False),
    sa.Column('slcl_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['invoice_line_id'], ['invoice_line.id'], name=op.f('fk_invoice_line_slcl_invoice_line_id_invoice_line')),
    sa.ForeignKeyConstraint(['slcl_id'], ['scheduled_license_change_log.id'], name=op.f('fk_invoice_line_slcl_slcl_id_scheduled_license_change_log')),
    sa.PrimaryKeyConstraint('invoice_line_id', 'slcl_id', name=op.f('pk_invoice_line_slcl'))
    )
    with op.batch_alter_table('invoice_line_slcl', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_invoice_line_slcl_slcl_id'), ['slcl_id'], unique=False)

    op.create_table('license_change_log',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('subscription_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('standard', 'audit', name='lcl_kind', native_enum=False, create_constraint=True, length=24), nullable=False),
    sa.Column('change_type', sa.Enum('activation', 'quantity', 'price', 'quantity_price', 'deactivation', 'suspension', 'reactivation', name='change_type', native_enum=False, create_constraint=True, length=24), nullable=False),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('quantity_before', sa.Integer(), nullable=False),
    sa.Column('quantity_after', sa.Integer(), nullable=False),
    sa.Column('selling_price_before', w365.store.types.ExactDecimal(precision=18, scale=6), nullable=False),
    sa.Column('selling_price_after', w365.store.types.ExactDecimal(precision=18, scale=6), nullable=False),
    sa.Column('cost_price_before', w365.store.types.ExactDecimal(precision=18, scale=6), nullable=False),
    sa.Column('cost_price_after', w365.store.types.ExactDecimal(precision=18, scale=6), nullable=False),
    sa.Column('sales_unit_before', sa.String(length=24), nullable=False),
    sa.Column('sales_unit_after', sa.String(length=24), nullable=False),
    sa.Column('status_before', sa.Enum('pending', 'active', 'suspended', 'deactivated', name='status_before', native_enum=False, create_constraint=True, length=24), nullable=False),
    sa.Column('status_after', sa.Enum('pending', 'active', 'suspended', 'deactivated', name='status_after', native_enum=False, create_constraint=True, length=24), nullable=False),
    sa.Column('effective_date', sa.Date(), nullable=False),
    sa.Column('effective_at', w365.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('bill_from', sa.Date(), nullable=False),
    sa.Column('apply_refund', sa.Boolean(), nullable=False),
    sa.Column('source', sa.Enum('user', 'provider', 'slcl', 'portal', 'import', 'renewal', 'system', name='change_source', native_enum=False, create_constraint=True, length=24), nullable=False),
    sa.Column('slcl_id', sa.Integer(), nullable=True),
    sa.Column('provisioning_status', sa.Enum('pending', 'provisioned', 'not_required', 'failed', name='provisioning_status', native_enum=False, create_constraint=True, length=24), nullable=False),
    sa.Column('provisioned_at', w365.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('created_by', sa.String(length=100), nullable=True),
    sa.Column('created_at', w365.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('quantity_before >= 0 AND quantity_after >= 0', name=op.f('ck_license_change_log_quantity_nonneg')),
    sa.ForeignKeyConstraint(['sales_unit_after'], ['unit_mapping.code'], name=op.f('fk_license_change_log_sales_unit_after_unit_mapping')),
    sa.ForeignKeyConstraint(['slcl_id'], ['scheduled_license_change_log.id'], name=op.f('fk_license_change_log_slcl_id_scheduled_license_change_log')),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscription.id'], name=op.f('fk_license_change_log_subscription_id_subscription')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_license_change_log')),
    sa.UniqueConstraint('slcl_id', name=op.f('uq_license_change_log_slcl_id'))
    )
    with op.batch_alter_table('license_change_log', schema=None) as batch_op:
        batch_op.create_index('ix_license_change_log_sub_bill_from', ['subscription_id', 'bill_from'], unique=False)

    op.create_table('invoice_line_lcl',
    sa.Column('invoice_line_id', sa.Integer(), nullable=False),
    sa.Column('lcl_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['invoice_line_id'], ['invoice_line.id'], name=op.f('fk_invoice_line_lcl_invoice_line_id_invoice_line')),
    sa.ForeignKeyConstraint(['lcl_id'], ['license_change_log.id'], name=op.f('fk_invoice_line_lcl_lcl_id_license_change_log')),
    sa.PrimaryKeyConstraint('invoice_line_id', 'lcl_id', name=op.f('pk_invoice_line_lcl'))
    )
    with op.batch_alter_table('invoice_line_lcl', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_invoice_line_lcl_lcl_id'), ['lcl_id'], unique=False)



    unit = sa.table("unit_mapping", sa.column("code", sa.String), sa.column("name", sa.String), sa.column("months", sa.Integer))
    op.bulk_insert(
        unit,
        [
            {"code": "MONTHLY", "name": "Monthly", "months": 1},
            {"code": "QUARTERLY", "name": "Quarterly", "months": 3},
            {"code": "ANNUAL", "name": "Annual", "months": 12},
            {"code": "TRIENNIAL", "name": "Triennial", "months": 36},
            {"code": "ONE_TIME", "name": "One-time", "months": None},
        ],
    )
    op.execute("INSERT INTO tenant (id, name, time_zone, invoice_prefix, next_invoice_number, created_at) "
               "VALUES (1, 'default', 'UTC', 'INV-', 1, CURRENT_TIMESTAMP)")
    _create_guards()


# What a license change log *was* never changes; only provisioning bookkeeping may be updated.
LCL_FROZEN = (
    "subscription_id", "kind", "change_type", "direction", "quantity_before", "quantity_after",
    "selling_price_before", "selling_price_after", "cost_price_before", "cost_price_after",
    "sales_unit_before", "sales_unit_after", "status_before", "status_after", "effective_date",
    "effective_at", "bill_from", "apply_refund", "source", "slcl_id", "created_at",
)
LINE_FROZEN = (
    "invoice_id", "subscription_id", "kind", "period_from", "period_to", "quantity", "unit_price",
    "days", "period_days", "amount",
)


def _create_guards() -> None:
    if op.get_context().dialect.name == "postgresql":
        for table, cols, what in (
            ("license_change_log", LCL_FROZEN, "license_change_log is append-only (SPEC S3)"),
            ("invoice_line", LINE_FROZEN, "invoice lines are immutable once issued"),
        ):
            old = ", ".join(f"OLD.{c}" for c in cols)
            new = ", ".join(f"NEW.{c}" for c in cols)
            op.execute(f"""
CREATE FUNCTION w365_guard_{table}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION '{what}: rows cannot be deleted (id %)', OLD.id;
  END IF;
  IF ROW({old}) IS DISTINCT FROM ROW({new}) THEN
    RAISE EXCEPTION '{what}: row % cannot be changed', OLD.id;
  END IF;
  RETURN NEW;
END $$""")
            op.execute(f"CREATE TRIGGER guard_{table} BEFORE UPDATE OR DELETE ON {table} "
                       f"FOR EACH ROW EXECUTE FUNCTION w365_guard_{table}()")
    else:
        for table, cols, what in (
            ("license_change_log", LCL_FROZEN, "license_change_log is append-only (SPEC S3)"),
            ("invoice_line", LINE_FROZEN, "invoice lines are immutable once issued"),
        ):
            op.execute(f"CREATE TRIGGER guard_{table}_delete BEFORE DELETE ON {table} "
                       f"BEGIN SELECT RAISE(ABORT, '{what}: rows cannot be deleted'); END")
            op.execute(f"CREATE TRIGGER guard_{table}_update BEFORE UPDATE OF {', '.join(cols)} ON {table} "
                       f"BEGIN SELECT RAISE(ABORT, '{what}: rows cannot be changed'); END")


def _drop_guards() -> None:
    if op.get_context().dialect.name == "postgresql":
        for table in ("license_change_log", "invoice_line"):
            op.execute(f"DROP TRIGGER IF EXISTS guard_{table} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS w365_guard_{table}()")
    else:
        for table in ("license_change_log", "invoice_line"):
            op.execute(f"DROP TRIGGER IF EXISTS guard_{table}_delete")
            op.execute(f"DROP TRIGGER IF EXISTS guard_{table}_update")



def downgrade() -> None:
    _drop_guards()
    with op.batch_alter_table('invoice_line_lcl', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_invoice_line_lcl_lcl_id'))

    op.drop_table('invoice_line_lcl')
    with op.batch_alter_table('license_change_log', schema=None) as batch_op:
        batch_op.drop_index('ix_license_change_log_sub_bill_from')

    op.drop_table('license_change_log')
    with op.batch_alter_table('invoice_line_slcl', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_invoice_line_slcl_slcl_id'))

    op.drop_table('invoice_line_slcl')
    with op.batch_alter_table('usage_record', schema=None) as batch_op:
        batch_op.drop_index('ix_usage_record_day')

    op.drop_table('usage_record')
    with op.batch_alter_table('scheduled_license_change_log', schema=None) as batch_op:
        batch_op.drop_index('uq_slcl_one_open_per_subscription', sqlite_where=sa.text("status IN ('pending', 'awaiting_merge', 'merge_failed')"), postgresql_where=sa.text("status IN ('pending', 'awaiting_merge', 'merge_failed')"))
        batch_op.drop_index('ix_slcl_due')

    op.drop_table('scheduled_license_change_log')
    with op.batch_alter_table('invoice_line', schema=None) as batch_op:
        batch_op.drop_index('uq_invoice_line_recurring', sqlite_where=sa.text("kind = 'recurring'"), postgresql_where=sa.text("kind = 'recurring'"))
        batch_op.drop_index('uq_invoice_line_one_time', sqlite_where=sa.text("kind = 'one_time'"), postgresql_where=sa.text("kind = 'one_time'"))
        batch_op.drop_index('ix_invoice_line_subscription')

    op.drop_table('invoice_line')
    with op.batch_alter_table('subscription', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subscription_contract_id'))

    op.drop_table('subscription')
    op.drop_table('product_price')
    with op.batch_alter_table('invoice', schema=None) as batch_op:
        batch_op.drop_index('uq_invoice_usage_period', sqlite_where=sa.text("kind = 'usage'"), postgresql_where=sa.text("kind = 'usage'"))
        batch_op.drop_index('uq_invoice_full_cycle_period', sqlite_where=sa.text("kind = 'full_cycle'"), postgresql_where=sa.text("kind = 'full_cycle'"))
        batch_op.drop_index('uq_invoice_change_log_run', sqlite_where=sa.text("kind = 'change_log'"), postgresql_where=sa.text("kind = 'change_log'"))
        batch_op.drop_index(batch_op.f('ix_invoice_contract_id'))

    op.drop_table('invoice')
    op.drop_table('contract_metric_snapshot')
    with op.batch_alter_table('product', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_product_offer_id'))

    op.drop_table('product')
    with op.batch_alter_table('billing_contract', schema=None) as batch_op:
        batch_op.drop_index('ix_billing_contract_due')

    op.drop_table('billing_contract')
    op.drop_table('unit_mapping')
    op.drop_table('tenant')
    op.drop_table('provider')
    op.drop_table('job_exception')
    op.drop_table('incentive_plan')
    op.drop_table('exchange_rate')
    op.drop_table('customer')
    op.drop_table('alert_sent')
