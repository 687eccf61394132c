"""Microsoft Partner Center over REST (SPEC P1, P4).

Connection (``provider.connection_id``, an Airflow Connection; env form ``AIRFLOW_CONN_<ID>``):

* host / ``extra.base_url``: the API root, e.g. ``https://api.partnercenter.microsoft.com``;
* login / password: the app's client id and secret; with ``extra.token_url`` (e.g.
  ``https://login.microsoftonline.com/<partner-tenant>/oauth2/v2.0/token``) a bearer token is
  fetched with the OAuth2 client-credentials grant (``extra.scope``, default
  ``https://api.partnercenter.microsoft.com/.default``); without it the password is sent as a
  bearer token (for gateways that issue long-lived tokens);
* optional extras: ``page_size`` (default 500), ``usage_path`` (default ``/v1/usage/lineitems``),
  ``timeout`` (seconds, default 30), ``max_retries`` (default 5), ``backoff_base`` (seconds,
  default 1), ``backoff_max`` (default 60).

Resources: ``GET /v1/customers`` (paged) and ``GET /v1/customers/{customer-tenant-id}/subscriptions``
(paged by ``continuationToken`` / ``links.next``); usage line items ``GET {usage_path}?usageDate=
YYYY-MM-DD&type=interim|final`` (paged the same way), each item with customerId, subscriptionId,
meterId, meterName, unitOfMeasure, usageDate, quantity, unitPrice, preTaxTotal (or
billingPreTaxTotal) and currency (or billingCurrency).
"""

from __future__ import annotations

import logging
from datetime import date
from typing import TYPE_CHECKING, Any, Iterator
from urllib.parse import quote

from w365.connections import ConnectionInfo
from w365.integrations.http import HttpError, JsonHttpClient, client_from_connection, setting_number
from w365.integrations.providers.base import ProviderClient, ProviderUnavailable, SubscriptionBatch, usage_frame

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

DEFAULT_SCOPE = "https://api.partnercenter.microsoft.com/.default"
API_ROOT = "/v1"


class _PartnerCenterHttp(JsonHttpClient):
    def next_page_url(self, uri: str) -> str:
        """Partner Center's ``links.next.uri`` is relative to the API root (``/customers?...``)."""
        if "://" in uri or uri.startswith(API_ROOT + "/"):
            return uri
        return API_ROOT + (uri if uri.startswith("/") else "/" + uri)


class PartnerCenterClient(ProviderClient):
    kind = "partner_center"

    def __init__(self, http: JsonHttpClient, *, page_size: int = 500, usage_path: str = API_ROOT + "/usage/lineitems"):
        self.http = http
        self.page_size = page_size
        self.usage_path = usage_path

    @classmethod
    def from_connection(cls, conn: ConnectionInfo, **http_kwargs: Any) -> "PartnerCenterClient":
        http = client_from_connection(conn, cls=_PartnerCenterHttp, default_scope=DEFAULT_SCOPE, **http_kwargs)
        return cls(
            http, page_size=int(setting_number(conn.extra, "page_size", 500)),
            usage_path=str(conn.extra.get("usage_path") or API_ROOT + "/usage/lineitems"),
        )

    def __repr__(self) -> str:
        return f"PartnerCenterClient({self.http!r})"

    def close(self) -> None:
        self.http.close()

    def customers(self) -> Iterator[Any]:
        return self.http.paged(API_ROOT + "/customers", params={"size": self.page_size})

    @staticmethod
    def customer_id(customer: Any) -> str | None:
        if not isinstance(customer, dict):
            return None
        profile = customer.get("companyProfile")
        value = customer.get("id") or (profile.get("tenantId") if isinstance(profile, dict) else None)
        return str(value) if value else None

    def subscription_batches(self) -> Iterator[SubscriptionBatch]:
        try:
            customers = list(self.customers())
        except HttpError as exc:
            raise ProviderUnavailable(f"Partner Center customer list could not be read: {exc}") from None
        log.info("Partner Center: %d customer(s)", len(customers))
        for n, customer in enumerate(customers, start=1):
            tenant_id = self.customer_id(customer)
            if tenant_id is None:
                yield SubscriptionBatch(None, error=f"customer record #{n} has no id")
                continue
            try:
                items = list(self.http.paged(f"{API_ROOT}/customers/{quote(tenant_id, safe='')}/subscriptions"))
            except HttpError as exc:
                yield SubscriptionBatch(tenant_id, error=str(exc))
                continue
            yield SubscriptionBatch(tenant_id, items)

    def usage(self, day: date, kind: str) -> "pd.DataFrame | None":
        try:
            records = list(self.http.paged(self.usage_path, params={"usageDate": day.isoformat(), "type": kind, "size": self.page_size}))
        except HttpError as exc:
            raise ProviderUnavailable(f"Partner Center usage for {day} could not be read: {exc}") from None
        log.info("Partner Center: %d %s usage line(s) for %s", len(records), kind, day)
        return usage_frame(records)
