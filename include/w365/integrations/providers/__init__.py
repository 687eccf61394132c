"""Providers (SPEC P1, P4): Partner Center (REST), file drop (CSV/JSON exports) and Manual.

``client_for(provider)`` builds the client for a ``provider`` row from its ``kind`` and its
Airflow Connection (``connection_id``). Tests and tools may pass ``http`` keyword arguments
(``sleep``, ``transport``) through to the Partner Center client.
"""

from __future__ import annotations

from typing import Any

from w365.connections import get_connection
from w365.errors import W365Error
from w365.integrations.providers.base import (
    BILLING_CYCLE_UNITS,
    STATUS_MAP,
    BadRecord,
    ProviderClient,
    ProviderSubscription,
    ProviderUnavailable,
    SubscriptionBatch,
    parse_subscription,
    usage_frame,
)

__all__ = [
    "BILLING_CYCLE_UNITS", "STATUS_MAP", "BadRecord", "ProviderClient", "ProviderSubscription", "ProviderUnavailable",
    "SubscriptionBatch", "client_for", "parse_subscription", "usage_frame",
]


def _kind(provider: Any) -> str:
    kind = provider.kind
    return str(kind)


def client_for(provider: Any, **http_kwargs: Any) -> ProviderClient:
    """The client for a provider row (anything with ``kind``, ``name`` and ``connection_id``)."""
    kind = _kind(provider)
    if kind == "manual":
        from w365.integrations.providers.manual import ManualProvider

        return ManualProvider()
    if not provider.connection_id:
        raise W365Error(f"provider {provider.name!r} ({kind}) has no connection_id")
    conn = get_connection(provider.connection_id)
    if kind == "file" or (conn.conn_type or "").lower() in ("fs", "file"):
        # A folder connection: the provider's exports in its own shapes (a Partner Center export
        # works as well as a distributor's), read by the file-drop client.
        from w365.integrations.providers.file_drop import FileDropProvider

        return FileDropProvider.from_connection(conn)
    if kind == "partner_center":
        from w365.integrations.providers.partner_center import PartnerCenterClient

        return PartnerCenterClient.from_connection(conn, **http_kwargs)
    raise W365Error(f"provider {provider.name!r} has an unknown kind {kind!r}")
