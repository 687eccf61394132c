"""Web hardening shared by the w365 pages and the end-customer portal (issue 12; docs/ui.md).

* **Forwarded headers** (``X-Forwarded-Host``/``-For``, RFC 7239 ``Forwarded``; ``-Proto`` is
  not used at all) are believed only when the connection comes from a configured proxy: ``[w365] trusted_proxies``
  (``AIRFLOW__W365__TRUSTED_PROXIES``), addresses or networks separated by commas, e.g.
  ``127.0.0.1, 10.0.0.0/8``; ``*`` trusts every peer (only when nothing reaches the api-server
  but through the proxy). Default: none, so a client's own ``X-Forwarded-Host: evil`` is
  ignored. :func:`request_host` is what the CSRF guard compares ``Origin`` with,
  :func:`client_address` what the portal's limiter counts by.
* **Security headers** on every response of both apps (:class:`SecurityHeaders`): a
  Content-Security-Policy, ``X-Frame-Options``, ``X-Content-Type-Options: nosniff`` and a
  ``Referrer-Policy``. A route may set its own CSP (the HTML export does).
* **Failed authentications** (:class:`FailureLimiter`): a sliding window per client address,
  in process and thread-safe (one api-server process; each worker counts on its own).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from functools import lru_cache
from ipaddress import ip_address, ip_network
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

TRUSTED_PROXIES_SETTING = "trusted_proxies"

# The pages: scripts and styles only from the app's own files (w365.js, w365.css, served by the
# pages' app), fetch() only to this origin, forms only here, framed only by Airflow's UI on the
# same origin. The trend plots are inline <svg> elements, which no CSP directive governs.
PAGES_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
             "form-action 'self'; frame-ancestors 'self'; base-uri 'none'")
PAGES_HEADERS = {
    "Content-Security-Policy": PAGES_CSP,
    "X-Frame-Options": "SAMEORIGIN",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
# The portal answers JSON (and a plain HTML list of its operations at /docs): nothing to load,
# nothing to frame.
PORTAL_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
PORTAL_HEADERS = {
    "Content-Security-Policy": PORTAL_CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


# ------------------------------------------------------------------------------------ headers


class SecurityHeaders:
    """ASGI middleware: adds ``headers`` to every HTTP response that does not set them itself."""

    def __init__(self, app: Any, headers: Mapping[str, str]) -> None:
        self.app = app
        self.headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                present = {k.lower() for k, _ in raw}
                raw += [(k, v) for k, v in self.headers if k not in present]
                message = {**message, "headers": raw}
            await send(message)

        await self.app(scope, receive, send_with_headers)


# ------------------------------------------------------------------------------------ proxies


@lru_cache(maxsize=8)
def _parse_proxies(raw: str) -> tuple[bool, tuple[Any, ...]]:
    trust_all, nets = False, []
    for entry in raw.replace(";", ",").split(","):
        entry = entry.strip()
        if not entry:
            continue
        if entry == "*":
            trust_all = True
            continue
        try:
            nets.append(ip_network(entry, strict=False))
        except ValueError:
            log.warning("[w365] %s: %r is not an address or network; ignored", TRUSTED_PROXIES_SETTING, entry)
    return trust_all, tuple(nets)


def trusted_proxies() -> tuple[bool, tuple[Any, ...]]:
    """(trust every peer?, the trusted networks) from ``[w365] trusted_proxies``."""
    from w365.config import setting

    return _parse_proxies(setting(TRUSTED_PROXIES_SETTING) or "")


def is_trusted_proxy(host: str | None) -> bool:
    trust_all, nets = trusted_proxies()
    if trust_all:
        return True
    if not host or not nets:
        return False
    try:
        addr = ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return any(addr in net for net in nets)


def _peer(request: Any) -> str:
    return request.client.host if request.client else ""


def _forwarded_elements(request: Any) -> list[dict[str, str]]:
    """RFC 7239 ``Forwarded``: one dict per hop, in order (nearest proxy last)."""
    out = []
    for header in request.headers.getlist("forwarded"):
        for element in header.split(","):
            pairs: dict[str, str] = {}
            for pair in element.split(";"):
                key, sep, value = pair.partition("=")
                if sep:
                    pairs[key.strip().lower()] = value.strip().strip('"')
            if pairs:
                out.append(pairs)
    return out


def _header_list(request: Any, name: str) -> list[str]:
    return [v.strip() for header in request.headers.getlist(name) for v in header.split(",") if v.strip()]


def _node_address(node: str) -> str:
    """``192.0.2.1:4711`` / ``[2001:db8::1]:4711`` / ``2001:db8::1`` -> the address alone."""
    node = node.strip().strip('"')
    if node.startswith("["):
        return node[1:].split("]", 1)[0]
    if node.count(":") == 1:
        return node.split(":", 1)[0]
    return node


def forwarded_chain(request: Any) -> list[str]:
    """The client addresses the proxies report (``X-Forwarded-For``, else ``Forwarded: for=``),
    original client first. Only meaningful when the peer is a trusted proxy."""
    chain = _header_list(request, "x-forwarded-for")
    if not chain:
        chain = [e["for"] for e in _forwarded_elements(request) if "for" in e]
    return [_node_address(n) for n in chain]


def client_address(request: Any) -> str:
    """Who is asking: the TCP peer, or, when the peer is a trusted proxy, the nearest address in
    the forwarded chain that is not itself a trusted proxy (hops further left could be made up
    by the client)."""
    peer = _peer(request)
    if not is_trusted_proxy(peer):
        return peer
    chain = forwarded_chain(request)
    for addr in reversed(chain):
        if not is_trusted_proxy(addr):
            return addr
    return chain[0] if chain else peer


def request_host(request: Any) -> str:
    """The host (and port) the browser asked for: the ``Host`` header, or, when the peer is a
    trusted proxy that says so, the host it reports (``X-Forwarded-Host``, else ``Forwarded:
    host=``; the value the nearest proxy added, never one the client could have put first)."""
    host = request.headers.get("host", "")
    if is_trusted_proxy(_peer(request)):
        forwarded = _header_list(request, "x-forwarded-host")
        if not forwarded:
            forwarded = [e["host"] for e in _forwarded_elements(request) if "host" in e]
        if forwarded:
            host = forwarded[-1]
    return host


_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _host_port(netloc: str, scheme: str) -> str:
    netloc = netloc.strip().lower()
    default = _DEFAULT_PORTS.get(scheme)
    if default and netloc.endswith(f":{default}") and not netloc.endswith("]"):
        netloc = netloc[: -len(default) - 1]
    return netloc


def same_origin(origin: str, request: Any) -> bool:
    """Is ``origin`` (a browser's ``Origin`` header) this very host? Host and port are compared
    (a default port may be left out on either side); the scheme is not, so a TLS-terminating
    proxy that passes ``Host`` through needs no configuration."""
    parts = urlsplit(origin)
    if not parts.netloc:
        return False  # "null" (sandboxed frames, some redirects): not this origin
    scheme = parts.scheme.lower()
    return _host_port(parts.netloc, scheme) == _host_port(request_host(request), scheme)


# ------------------------------------------------------------------------------------ limiter


class FailureLimiter:
    """At most ``limit`` failed authentications per client in any ``window`` seconds (a sliding
    window). :meth:`retry_after` says whether a client is blocked now and for how long; only
    failures count (a success does not clear them, so a client holding one valid token cannot
    use it to keep guessing others). In process and thread-safe: enough for one api-server
    process; with several workers or api-servers each counts on its own.

    ``clock`` (seconds, monotonic by default) is injectable so tests need not sleep.
    """

    def __init__(self, limit: int = 10, window: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = 10_000) -> None:
        self.limit, self.window, self.clock, self.max_clients = limit, window, clock, max_clients
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        q = self._failures.get(key)
        if q is None:
            return None
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self._failures[key]
            return None
        return q

    def retry_after(self, key: str) -> int | None:
        """Seconds until ``key`` may try again, or None if it may now."""
        with self._lock:
            now = self.clock()
            q = self._recent(key, now)
            if q is None or len(q) < self.limit:
                return None
            return max(1, math.ceil(q[0] + self.window - now))

    def failed(self, key: str) -> None:
        with self._lock:
            now = self.clock()
            q = self._recent(key, now) or deque()
            self._failures.pop(key, None)
            q.append(now)
            while len(q) > self.limit:
                q.popleft()
            self._failures[key] = q  # most recently failed last
            if len(self._failures) > self.max_clients:
                for other in list(self._failures):
                    self._recent(other, now)  # drops those whose failures are all older than the window
                while len(self._failures) > self.max_clients:  # still too many: forget the longest quiet
                    del self._failures[next(iter(self._failures))]
