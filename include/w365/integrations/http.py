"""A small JSON-over-HTTP client for the integrations (Partner Center, accounting system).

What every caller needs and gets the same way:

* a timeout on every request (connect and read);
* the one retry layer for HTTP (tenacity): HTTP 429, 500, 502, 503, 504 and network errors are
  retried with exponential backoff (``backoff_base * 2**attempt``, capped at ``backoff_max``);
  on 429/503 the server's ``Retry-After`` (seconds or an HTTP date) is honoured, capped at
  ``backoff_max``. Budget per request: at most ``max_retries`` retries and ``retry_budget``
  seconds of waiting, whichever comes first (defaults 5 and 300 s: at most 6 attempts in about 5
  minutes); then the request fails with :class:`HttpError`. The Airflow task does not retry what
  this layer gave up on (``w365.orchestration.airflow_support.FAIL_FAST``): ops clear the run when
  the provider is back (reruns are idempotent);
* one token refresh on HTTP 401 (OAuth2 client credentials) before giving up;
* JSON numbers parsed as ``Decimal`` (SPEC M1: never float);
* paging through ``continuationToken`` / ``links.next`` (Partner Center's collection shape);
* logs that name the method, path and status, never headers, tokens or passwords.

``sleep`` and the backoff numbers are injectable so tests run in milliseconds.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, Iterator
from urllib.parse import urlsplit

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type

from w365.errors import ExternalError

if TYPE_CHECKING:
    from w365.connections import ConnectionInfo

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class HttpError(ExternalError):
    """A request that failed for good (after retries, or a non-retryable status)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class _Transient(Exception):
    """A failure worth another try (HTTP 429/5xx, a timeout, a network error)."""

    def __init__(self, problem: str, response: httpx.Response | None = None):
        super().__init__(problem)
        self.response = response
        self.status = response.status_code if response is not None else None


class TokenAuth:
    """Bearer token for each request: a fixed token, or OAuth2 client credentials fetched from
    ``token_url`` and cached until shortly before it expires."""

    def __init__(
        self,
        *,
        token: str | None = None,
        token_url: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        scope: str | None = None,
        resource: str | None = None,
    ):
        self._static = token
        self.token_url = token_url
        self.client_id = client_id
        self._secret = client_secret
        self.scope = scope
        self.resource = resource
        self._token: str | None = None
        self._expires = 0.0

    def __repr__(self) -> str:
        return f"TokenAuth(token_url={self.token_url!r}, client_id={self.client_id!r})"

    def invalidate(self) -> None:
        self._token = None

    def headers(self, http: httpx.Client, timeout: float) -> dict[str, str]:
        if self.token_url:
            if self._token is None or time.monotonic() >= self._expires:
                self._fetch(http, timeout)
            return {"Authorization": f"Bearer {self._token}"}
        if self._static:
            return {"Authorization": f"Bearer {self._static}"}
        return {}

    def _fetch(self, http: httpx.Client, timeout: float) -> None:
        data = {"grant_type": "client_credentials", "client_id": self.client_id or "", "client_secret": self._secret or ""}
        if self.scope:
            data["scope"] = self.scope
        if self.resource:
            data["resource"] = self.resource
        try:
            resp = http.post(self.token_url, data=data, timeout=timeout)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            raise HttpError(f"token request to {_where(str(self.token_url))} failed: {type(exc).__name__}") from None
        if resp.status_code != 200:
            raise HttpError(f"token request to {_where(str(self.token_url))} was refused: HTTP {resp.status_code}", resp.status_code)
        body = resp.json()
        token = body.get("access_token")
        if not token:
            raise HttpError(f"token response from {_where(str(self.token_url))} has no access_token")
        self._token = str(token)
        self._expires = time.monotonic() + max(0, int(body.get("expires_in") or 3600) - 60)


def _where(url: str) -> str:
    """host + path of a URL, for messages (no query string, no credentials)."""
    parts = urlsplit(url)
    return f"{parts.hostname or ''}{parts.path}"


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def parse_json(content: bytes, what: str) -> Any:
    try:
        return json.loads(content, parse_float=Decimal)
    except ValueError as exc:
        raise HttpError(f"{what}: the response is not JSON ({exc})") from None


class JsonHttpClient:
    def __init__(
        self,
        base_url: str,
        *,
        auth: TokenAuth | None = None,
        timeout: float = 30.0,
        max_retries: int = 5,
        retry_budget: float = 300.0,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        headers: dict[str, str] | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.timeout = timeout
        self.max_retries = max_retries
        self.retry_budget = retry_budget
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.sleep = sleep
        self.requests = 0
        self.retries = 0
        self._http = httpx.Client(
            base_url=self.base_url, timeout=httpx.Timeout(timeout), transport=transport,
            headers={"Accept": "application/json", "User-Agent": "w365", **(headers or {})},
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({_where(self.base_url)!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "JsonHttpClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _delay(self, attempt: int, resp: httpx.Response | None) -> float:
        if resp is not None and resp.status_code in (429, 503):
            hinted = retry_after_seconds(resp.headers.get("Retry-After"))
            if hinted is not None:
                return min(hinted, self.backoff_max)
        return min(self.backoff_base * (2**attempt), self.backoff_max)

    def request_json(
        self, method: str, url: str, *, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
        json_body: Any = None,
    ) -> Any:
        where = _where(url if "://" in url else self.base_url + url)
        waited = [0.0]

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            resp = exc.response if isinstance(exc, _Transient) else None
            return self._delay(state.attempt_number - 1, resp)

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            delay = state.next_action.sleep if state.next_action else 0.0
            waited[0] += delay
            self.retries += 1
            log.warning("%s %s: %s; retry %d/%d in %.1fs", method, where, exc, state.attempt_number, self.max_retries, delay)

        def within_budget(state: RetryCallState) -> bool:
            """Stop when the retries are spent, or when the next wait would pass the budget."""
            if state.attempt_number > self.max_retries:
                return True
            return waited[0] + wait(state) > self.retry_budget

        retrying = Retrying(
            retry=retry_if_exception_type(_Transient), stop=within_budget, wait=wait, sleep=self.sleep,
            before_sleep=before_sleep, reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._attempt(method, url, where, params, headers, json_body)
        except _Transient as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            raise HttpError(f"{method} {where} failed after {attempts} attempt(s): {exc}", exc.status) from None
        raise AssertionError("unreachable")  # pragma: no cover - Retrying returns or raises

    def _attempt(self, method: str, url: str, where: str, params: dict[str, Any] | None, headers: dict[str, str] | None,
                 json_body: Any) -> Any:
        """One try (a 401 refreshes the token once within it); a failure worth retrying raises
        :class:`_Transient`."""
        for refreshed in (False, True):
            hdrs = dict(headers or {})
            if self.auth is not None:
                hdrs.update(self.auth.headers(self._http, self.timeout))
            self.requests += 1
            try:
                resp = self._http.request(method, url, params=params, headers=hdrs, json=json_body)
            except httpx.TimeoutException:
                raise _Transient(f"timed out after {self.timeout}s") from None
            except httpx.TransportError as exc:
                raise _Transient(f"network error ({type(exc).__name__})") from None
            if resp.status_code < 400:
                return parse_json(resp.content, f"{method} {where}")
            if resp.status_code == 401 and self.auth is not None and self.auth.token_url and not refreshed:
                self.auth.invalidate()
                continue
            if resp.status_code not in RETRY_STATUSES:
                raise HttpError(f"{method} {where} failed: HTTP {resp.status_code}{_detail(resp)}", resp.status_code)
            raise _Transient(f"HTTP {resp.status_code}", resp)
        raise HttpError(f"{method} {where} failed: HTTP 401 after a token refresh", 401)

    def get_json(self, url: str, *, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Any:
        return self.request_json("GET", url, params=params, headers=headers)

    def next_page_url(self, uri: str) -> str:
        """Where a ``links.next.uri`` points (absolute, or relative to the base URL)."""
        return uri

    def paged(self, url: str, *, params: dict[str, Any] | None = None, items_key: str = "items") -> Iterator[Any]:
        """Every item of a collection, page by page.

        Follows ``links.next`` (its ``uri`` and ``headers``, Partner Center's shape), else a bare
        ``continuationToken`` (sent back as the ``MS-ContinuationToken`` header with
        ``seekOperation=next``). A response that is a JSON list is a single page.
        """
        next_url, next_params = url, dict(params or {})
        next_headers: dict[str, str] = {}
        seen: set[str] = set()
        while True:
            page = self.get_json(next_url, params=next_params or None, headers=next_headers)
            if isinstance(page, list):
                yield from page
                return
            if not isinstance(page, dict):
                raise HttpError(f"GET {_where(next_url)}: expected a JSON object or list, got {type(page).__name__}")
            items = page.get(items_key)
            if items is None:
                items = page.get("value", [])
            if not isinstance(items, list):
                raise HttpError(f"GET {_where(next_url)}: '{items_key}' is not a list")
            yield from items
            link = (page.get("links") or {}).get("next") if isinstance(page.get("links"), dict) else None
            token = page.get("continuationToken")
            if isinstance(link, dict) and link.get("uri"):
                next_url = self.next_page_url(str(link["uri"]))
                next_params = {}
                next_headers = {str(h.get("key")): str(h.get("value")) for h in link.get("headers") or [] if isinstance(h, dict)}
                if token and "MS-ContinuationToken" not in next_headers:
                    next_headers["MS-ContinuationToken"] = str(token)
                marker = next_url + repr(sorted(next_headers.items()))
            elif token:
                next_url = url
                next_params = {**(params or {}), "seekOperation": "next"}
                next_headers = {"MS-ContinuationToken": str(token)}
                marker = str(token)
            else:
                return
            if marker in seen:
                raise HttpError(f"GET {_where(url)}: the server repeated a page link; stopping to avoid a loop")
            seen.add(marker)


def _detail(resp: httpx.Response) -> str:
    """A short, safe hint from an error body (its ``description``/``message``), never headers."""
    try:
        body = resp.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    error = body.get("error")
    msg = body.get("description") or body.get("message") or (error.get("message") if isinstance(error, dict) else None)
    return f" ({str(msg)[:200]})" if msg else ""


# --------------------------------------------------------------------------------------------


def setting_number(extra: dict[str, Any], key: str, default: float) -> float:
    value = extra.get(key)
    return float(value) if value not in (None, "") else default


def client_from_connection(
    conn: "ConnectionInfo",
    *,
    sleep: Callable[[float], None] | None = None,
    transport: httpx.BaseTransport | None = None,
    cls: type[JsonHttpClient] = JsonHttpClient,
    default_scope: str | None = None,
) -> JsonHttpClient:
    """A JSON client for a REST connection: base URL, auth and retry settings from the connection."""
    extra = conn.extra
    if extra.get("token_url"):
        auth: TokenAuth | None = TokenAuth(
            token_url=str(extra["token_url"]), client_id=conn.login, client_secret=conn.password,
            scope=extra.get("scope") or default_scope, resource=extra.get("resource"),
        )
    elif conn.password:
        auth = TokenAuth(token=conn.password)
    else:
        auth = None
    kwargs: dict[str, Any] = {
        "auth": auth,
        "timeout": setting_number(extra, "timeout", 30.0),
        "max_retries": int(setting_number(extra, "max_retries", 5)),
        "retry_budget": setting_number(extra, "retry_budget", 300.0),
        "backoff_base": setting_number(extra, "backoff_base", 1.0),
        "backoff_max": setting_number(extra, "backoff_max", 60.0),
        "transport": transport,
    }
    if sleep is not None:
        kwargs["sleep"] = sleep
    return cls(conn.base_url(), **kwargs)
