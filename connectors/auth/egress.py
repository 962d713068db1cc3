"""The SSRF guard: every URL fetched during discovery, registration and token requests goes through here.

Rules (`EgressPolicy`):

- https only; plain http only to a loopback host, and only when `insecure_loopback` is set (development, tests);
- the host is resolved and **every** address must be public: loopback (unless `insecure_loopback`), private,
  shared (CGNAT), link-local (cloud metadata at 169.254.169.254), multicast, reserved and unspecified ranges are
  refused, with IPv4-mapped, NAT64 and 6to4 IPv6 forms unwrapped first; the connection then goes to the checked
  address (the hostname is kept for `Host` and TLS), so a second DNS answer cannot swap it (no rebinding);
- origins the administrator wrote in the configuration (the upstream's own URL, a configured token endpoint or
  issuer) may sit on private addresses: `trusted_origins` skips the range check for exactly those origins;
- redirects are followed only within one origin, and re-checked; bodies and times are bounded.

Egress proxy (`HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` / `NO_PROXY`, read as `http1.proxy` reads them, once per
client): a URL the environment sends through a proxy passes the same form check, and its host is still resolved
by the hub and every address range-checked before anything is sent. The proxy is then asked for the host **by
name** (a tunnel for https), not for the checked address: the proxy resolves names for the networks behind it
(split DNS) and its own allow-lists are written as names, so pinning an address would break both. The cost is
the rebinding guarantee, which now rests with the proxy: between the hub's check and the proxy's lookup a name
could change its answer. Origins the administrator configured (`trusted_origins`) are not range-checked anyway,
so through a proxy they are not resolved by the hub at all: an identity provider stays reachable where only the
proxy can resolve external names. A discovered name the hub cannot resolve is refused, as without a proxy.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import anyio
import httpx2
import orjson

from connectors.auth.errors import UnsafeURL
from http1 import Proxy, ProxySettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
"""Resolve a host name to its addresses (textual). The default asks the system resolver."""

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


async def system_resolver(host: str, port: int) -> list[str]:
    """All addresses the system resolver gives for `host`, in its order, without duplicates."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for info in infos:
        seen.setdefault(str(info[4][0]).split("%", 1)[0], None)
    return list(seen)


@dataclass(frozen=True)
class EgressPolicy:
    """What outbound fetches may reach, and how much they may cost."""

    insecure_loopback: bool = False
    """Allow loopback addresses, and plain http to them (development and tests only)."""
    trusted_origins: frozenset[str] = frozenset()
    """`scheme://host:port` origins configured by the administrator; their addresses are not range-checked."""
    max_response_bytes: int = 256 * 1024
    timeout_s: float = 10.0
    max_redirects: int = 3
    resolver: Resolver = field(default=system_resolver, compare=False)


def origin_of(url: str | httpx2.URL) -> str:
    """`scheme://host:port` with the default port spelled out."""
    u = httpx2.URL(url)
    port = u.port or (443 if u.scheme == "https" else 80)
    return f"{u.scheme}://{u.host}:{port}"


def unwrap(ip: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv4-mapped, NAT64 or 6to4 IPv6 address; others unchanged."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if ip.sixtofour is not None:
            return ip.sixtofour
    return ip


def address_problem(ip: IPAddress, *, allow_loopback: bool, allow_private: bool) -> str | None:
    """Why `ip` may not be contacted, or None when it may."""
    ip = unwrap(ip)
    if isinstance(ip, ipaddress.IPv6Address) and ip.teredo is not None:
        return "a Teredo tunnel address"
    if ip.is_loopback:
        return None if allow_loopback else "a loopback address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_reserved:
        return "a reserved address"
    if allow_private:
        return None
    if ip.is_private or not ip.is_global:
        return "a private address"
    return None


def _is_loopback_host(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return unwrap(ipaddress.ip_address(host)).is_loopback
    except ValueError:
        return False


def check_url(url: str | httpx2.URL, policy: EgressPolicy) -> httpx2.URL:
    """Check a URL's form (scheme, host, no credentials) before any resolution.

    Raises:
        UnsafeURL: the URL may not be fetched.
    """
    try:
        u = httpx2.URL(url)
    except (httpx2.InvalidURL, TypeError):
        raise UnsafeURL("refused a malformed URL") from None
    if u.scheme not in ("https", "http") or not u.host:
        raise UnsafeURL(f"refused {_show(u)}: only https URLs with a host may be fetched")
    if u.userinfo:
        raise UnsafeURL(f"refused {_show(u)}: credentials in URLs are not allowed")
    if u.scheme == "http" and not (policy.insecure_loopback and _is_loopback_host(u.host)):
        raise UnsafeURL(f"refused {_show(u)}: plain http is allowed only to loopback with insecure_loopback")
    return u


async def checked_address(u: httpx2.URL, policy: EgressPolicy) -> str:
    """Resolve `u`'s host, check every address, and return the first (the one to connect to).

    Raises:
        UnsafeURL: an address is in a refused range, or the name does not resolve.
    """
    port = u.port or (443 if u.scheme == "https" else 80)
    try:
        literal: IPAddress | None = ipaddress.ip_address(u.host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = await policy.resolver(u.host, port)
        except OSError:
            raise UnsafeURL(f"refused {_show(u)}: the host name does not resolve") from None
    if not addresses:
        raise UnsafeURL(f"refused {_show(u)}: the host name does not resolve")
    trusted = origin_of(u) in policy.trusted_origins
    for text in addresses:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise UnsafeURL(f"refused {_show(u)}: the resolver returned a malformed address") from None
        problem = address_problem(ip, allow_loopback=policy.insecure_loopback, allow_private=trusted)
        if problem is not None:
            raise UnsafeURL(f"refused {_show(u)}: it resolves to {problem} ({ip})")
    return addresses[0]


def _show(u: httpx2.URL) -> str:
    """A URL for messages: scheme, host, port and path only (never the query, which may carry codes)."""
    port = f":{u.port}" if u.port else ""
    return f"{u.scheme}://{u.host}{port}{u.path}"


class GuardedTransport(httpx2.AsyncBaseTransport):
    """An httpx2 transport that checks each request's URL and connects only to the checked address, or asks the
    egress proxy for the checked host by name (see the module docstring)."""

    def __init__(
        self,
        policy: EgressPolicy,
        inner: httpx2.AsyncBaseTransport | None = None,
        *,
        proxies: ProxySettings | None = None,
    ) -> None:
        """`inner` carries direct requests (a given one carries every request: no proxy then, unless `proxies`
        names one); `proxies` defaults to the environment's.

        Raises:
            ProxyConfigError: the environment names a proxy URL that cannot be used (a ValueError).
        """
        self._policy = policy
        if proxies is None:
            proxies = ProxySettings() if inner is not None else ProxySettings.from_environment()
        self._proxies = proxies
        self._inner = inner or httpx2.AsyncHTTPTransport(trust_env=False)
        self._tunnels: dict[Proxy, httpx2.AsyncHTTPTransport] = {}

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        u = check_url(request.url, self._policy)
        proxy = self._proxies.for_target(u.scheme, u.host, u.port or (443 if u.scheme == "https" else 80))
        if proxy is not None:
            if origin_of(u) not in self._policy.trusted_origins:
                await checked_address(u, self._policy)
            return await self._through(proxy).handle_async_request(request)
        address = await checked_address(u, self._policy)
        if address != u.host:
            request.url = u.copy_with(host=address)
            if u.scheme == "https":
                request.extensions = {**request.extensions, "sni_hostname": u.host}
        return await self._inner.handle_async_request(request)

    def _through(self, proxy: Proxy) -> httpx2.AsyncHTTPTransport:
        """The transport that sends through `proxy` (one per proxy, kept for the client's lifetime)."""
        transport = self._tunnels.get(proxy)
        if transport is None:
            headers = {"Proxy-Authorization": proxy.authorization} if proxy.authorization else None
            transport = httpx2.AsyncHTTPTransport(trust_env=False, proxy=httpx2.Proxy(str(proxy), headers=headers))
            self._tunnels[proxy] = transport
        return transport

    async def aclose(self) -> None:
        await self._inner.aclose()
        for transport in self._tunnels.values():
            await transport.aclose()


@dataclass(frozen=True)
class EgressResponse:
    """A bounded, fully read response."""

    status: int
    headers: httpx2.Headers
    body: bytes
    url: str

    def json_object(self) -> dict[str, Any] | None:
        """The body as a JSON object, or None if it is not one."""
        try:
            value = orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None


class EgressClient:
    """A small HTTP client for control-plane fetches (metadata, registration, tokens) under an `EgressPolicy`."""

    def __init__(self, policy: EgressPolicy, *, transport: httpx2.AsyncBaseTransport | None = None) -> None:
        self.policy = policy
        self._http = httpx2.AsyncClient(
            transport=GuardedTransport(policy, transport),
            follow_redirects=False,
            timeout=httpx2.Timeout(policy.timeout_s),
            trust_env=False,
            headers={"User-Agent": "agenthub-oauth", "Accept": "application/json"},
        )

    async def __aenter__(self) -> EgressClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def get(self, url: str, *, headers: Mapping[str, str] | None = None) -> EgressResponse:
        """GET `url`, following same-origin redirects only.

        Raises:
            UnsafeURL: refused by the policy, a cross-origin redirect, or a body over the size limit.
            httpx2.HTTPError: the transport failed.
            TimeoutError: the whole exchange took longer than the policy allows.
        """
        return await self._send("GET", url, headers=headers)

    async def post(
        self,
        url: str,
        *,
        data: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> EgressResponse:
        """POST a form (`data`) or a JSON document (`json`); redirects are refused.

        Raises:
            UnsafeURL: refused by the policy, a redirect, or a body over the size limit.
            httpx2.HTTPError: the transport failed.
            TimeoutError: the whole exchange took longer than the policy allows.
        """
        return await self._send("POST", url, data=data, json=json, headers=headers)

    async def _send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> EgressResponse:
        with anyio.fail_after(self.policy.timeout_s):
            current = check_url(url, self.policy)
            for _hop in range(self.policy.max_redirects + 1):
                async with self._http.stream(method, current, headers=headers, data=data, json=json) as resp:
                    location = resp.headers.get("location")
                    if resp.is_redirect and location:
                        target = check_url(current.join(location), self.policy)
                        if method != "GET" or origin_of(target) != origin_of(current):
                            raise UnsafeURL(f"refused a redirect from {_show(current)} to {_show(target)}")
                        current = target
                        continue
                    body = await self._read_bounded(resp)
                    return EgressResponse(resp.status_code, resp.headers, body, str(current))
            raise UnsafeURL(f"refused {_show(current)}: more than {self.policy.max_redirects} redirects")

    async def _read_bounded(self, resp: httpx2.Response) -> bytes:
        limit = self.policy.max_response_bytes
        declared = resp.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise UnsafeURL(f"refused a response of {declared} bytes (limit {limit})")
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise UnsafeURL(f"refused a response over {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
