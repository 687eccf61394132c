"""A Manual provider: no API (SPEC P1). Its changes are provisioned by people, who are alerted by
the "Sync Subscriptions From Tenant to Provider - Manual" job (``w365.integrations.provisioning``); there is
nothing to read from it, so the sync jobs skip it."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Iterator

from w365.integrations.providers.base import ProviderClient, SubscriptionBatch

if TYPE_CHECKING:
    import pandas as pd


class ManualProvider(ProviderClient):
    kind = "manual"
    has_api = False

    def subscription_batches(self) -> Iterator[SubscriptionBatch]:
        return iter(())

    def usage(self, day: date, kind: str) -> "pd.DataFrame | None":
        return None
