"""Egress proxies: which forward proxy, if any, a connection to an origin goes through.

Enterprises reach LLM providers and remote MCP servers through an egress proxy named in the environment. The
variables and their precedence are the ones curl, Python's `urllib` and httpx2 read, so this client and the hub's
httpx2 clients send the same URL the same way:

- `https_proxy` / `HTTPS_PROXY` for https targets, `http_proxy` / `HTTP_PROXY` for plain http targets, and
  `all_proxy` / `ALL_PROXY` for both when the scheme's own variable is unset. The lower-case spelling wins when
  both are set, and an empty lower-case value unsets the variable. When `REQUEST_METHOD` is set (a CGI process)
  `HTTP_PROXY` is ignored: a request's `Proxy:` header would arrive in it.
- A proxy URL is `http://[user:password@]host[:port]`; without a scheme it is http, without a port 80. The
  credentials, percent-decoded, go to the proxy as `Proxy-Authorization: Basic`. Only http proxies are spoken to:
  a TLS (`https://`) or SOCKS proxy URL is refused with `ProxyConfigError`, never silently bypassed, since going
  direct where an egress proxy is required fails later and less clearly.
- `no_proxy` / `NO_PROXY` holds comma-separated entries; a target that matches one goes direct. An entry is `*`
  (every target), a host name (`example.com` matches it and its subdomains; `.example.com` and `*.example.com`
  only its subdomains), an IP address (`10.1.2.3`, `::1`, `[::1]`) or a CIDR range (`10.0.0.0/8`, `fd00::/8`),
  each with an optional port (`example.com:8443`, `[::1]:8080`) that limits it to that port. Addresses and ranges
  match targets written as addresses: names are never resolved to decide. Entries that cannot be read are
  ignored. Loopback is not exempt on its own: list `localhost,127.0.0.1,::1` to keep local traffic direct.

Every target goes through the proxy as a `CONNECT host:port` tunnel, plain http ones too, so the bytes of each
request and response are exactly those of a direct connection: no proxy rewrites a request's framing or replays a
request it already forwarded (see `http1.tunnel`).
"""

from __future__ import annotations

import base64
import enum
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import unquote, urlsplit

__all__ = [
    "FROM_ENVIRONMENT",
    "FromEnvironment",
    "NoProxy",
    "Proxy",
    "ProxyChoice",
    "ProxyConfigError",
    "ProxySettings",
    "connect_request",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ProxyConfigError(ValueError):
    """A proxy URL the client cannot use. The message names the variable and never repeats credentials."""


class FromEnvironment(enum.Enum):
    """The marker for "read the proxy from the environment variables" (the default of `H1Pool`)."""

    FROM_ENVIRONMENT = "from the environment"


FROM_ENVIRONMENT: Final = FromEnvironment.FROM_ENVIRONMENT


@dataclass(frozen=True, slots=True)
class Proxy:
    """One http forward proxy: where it listens and the credentials it is sent."""

    host: str
    port: int
    authorization: str | None = field(default=None, repr=False)
    """The `Proxy-Authorization` header value (`Basic ...`), from the URL's credentials."""

    @classmethod
    def parse(cls, url: str, *, source: str = "proxy URL") -> Proxy:
        """The proxy a URL names; `source` (a variable name) prefixes error messages.

        Raises:
            ProxyConfigError: the URL is malformed, has no host, or is not an http proxy.
        """
        text = url.strip()
        if "://" not in text:
            text = f"http://{text}"
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError:
            raise ProxyConfigError(f"{source}: not a valid proxy URL") from None
        scheme = parts.scheme.lower()
        if scheme != "http":
            raise ProxyConfigError(f"{source}: {scheme}:// proxies are not supported (only http://host:port)")
        if not parts.hostname:
            raise ProxyConfigError(f"{source}: the proxy URL has no host")
        authorization = None
        if "@" in parts.netloc:
            credentials = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
            authorization = "Basic " + base64.b64encode(credentials.encode()).decode("ascii")
        return cls(parts.hostname, port or 80, authorization)

    def __str__(self) -> str:
        """The proxy's URL without credentials (for messages)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


ProxyChoice = Proxy | None | Literal[FromEnvironment.FROM_ENVIRONMENT]
"""What a client is told about proxies: this proxy, none (always direct), or whatever the environment says."""


@dataclass(frozen=True, slots=True)
class _Rule:
    """One `NO_PROXY` entry: a name (with or without its subdomains) or an address range, maybe one port."""

    name: str | None
    subdomains_only: bool
    network: Network | None
    port: int | None

    def matches(self, host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            return address is not None and address.version == self.network.version and address in self.network
        name = self.name or ""
        return host.endswith("." + name) or (host == name and not self.subdomains_only)


@dataclass(frozen=True, slots=True)
class NoProxy:
    """The targets that go direct although a proxy is set (`NO_PROXY`)."""

    rules: tuple[_Rule, ...] = ()
    everything: bool = False

    @classmethod
    def parse(cls, text: str) -> NoProxy:
        """Read a `NO_PROXY` value (entries that cannot be read are skipped)."""
        rules: list[_Rule] = []
        for entry in text.replace(" ", ",").split(","):
            entry = entry.strip().lower()
            if entry == "*":
                return cls((), everything=True)
            rule = _rule(entry) if entry else None
            if rule is not None:
                rules.append(rule)
        return cls(tuple(rules))

    def bypasses(self, host: str, port: int) -> bool:
        """Whether a connection to `host:port` goes direct."""
        if self.everything:
            return True
        if not self.rules:
            return False
        host = host.lower().strip("[]").rstrip(".")
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            address = None
        return any(rule.matches(host, address, port) for rule in self.rules)


def _split_port(entry: str) -> tuple[str, int | None] | None:
    """An entry's host (or range) and port; None when the port is not a port number."""
    if entry.startswith("["):
        host, bracket, rest = entry[1:].partition("]")
        if not bracket:
            return None
        if not rest.startswith(":"):
            return host + rest, None  # `[fd00::]/8` names a range
        entry, port = host, rest[1:]
    elif entry.count(":") == 1:
        entry, _, port = entry.partition(":")
    else:
        return entry, None  # a name, an IPv4 address or range, or a bare IPv6 address or range
    if not port.isdigit() or int(port) > 65535:
        return None
    return entry, int(port)


def _rule(entry: str) -> _Rule | None:
    split = _split_port(entry)
    if split is None:
        return None
    host, port = split
    try:
        return _Rule(None, False, ipaddress.ip_network(host, strict=False), port)
    except ValueError:
        pass
    subdomains_only = host.startswith((".", "*."))
    name = host.removeprefix("*").removeprefix(".").rstrip(".")
    if not name or "*" in name or "/" in name:
        return None
    return _Rule(name, subdomains_only, None, port)


def _variable(environ: Mapping[str, str], key: str, *, cgi: bool) -> tuple[str, str] | None:
    """(variable name, value) of `<key>_proxy`, the lower-case spelling first; None when unset or empty."""
    lower = f"{key}_proxy"
    value = environ.get(lower)
    if value is not None:
        return (lower, value) if value.strip() else None
    upper = lower.upper()
    if cgi and upper == "HTTP_PROXY":
        return None
    value = environ.get(upper, "")
    return (upper, value) if value.strip() else None


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """The proxies for http and https targets and the targets that bypass them."""

    http: Proxy | None = None
    https: Proxy | None = None
    no_proxy: NoProxy = NoProxy()

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> ProxySettings:
        """Read the proxy variables (of `environ`, by default the process environment).

        Raises:
            ProxyConfigError: a proxy variable holds a URL the client cannot use.
        """
        env = os.environ if environ is None else environ
        cgi = "REQUEST_METHOD" in env
        fallback = _variable(env, "all", cgi=cgi)
        proxies: dict[str, Proxy | None] = {}
        for scheme in ("http", "https"):
            found = _variable(env, scheme, cgi=cgi) or fallback
            proxies[scheme] = Proxy.parse(found[1], source=found[0]) if found else None
        no_proxy = _variable(env, "no", cgi=cgi)
        return cls(proxies["http"], proxies["https"], NoProxy.parse(no_proxy[1]) if no_proxy else NoProxy())

    def for_target(self, scheme: str, host: str, port: int) -> Proxy | None:
        """The proxy a connection to `scheme://host:port` goes through, or None to go direct."""
        proxy = self.https if scheme == "https" else self.http
        if proxy is None or self.no_proxy.bypasses(host, port):
            return None
        return proxy

    def for_url(self, url: str) -> Proxy | None:
        """The proxy for `url`'s origin, or None to go direct (or when `url` is not an absolute http(s) URL)."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            return None
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            return None
        return self.for_target(scheme, parts.hostname, port)


def connect_request(proxy: Proxy, host: str, port: int) -> bytes:
    """The `CONNECT host:port` request that asks `proxy` for a tunnel (with its credentials, if any).

    Raises:
        ValueError: `host` holds characters that cannot appear in a request line.
    """
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    if any(c in host for c in " \t\r\n/@") or not host:
        raise ValueError(f"cannot ask a proxy for a tunnel to {host!r}")
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if proxy.authorization is not None:
        lines.append(f"Proxy-Authorization: {proxy.authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
