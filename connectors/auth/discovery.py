"""Authorization discovery: from an upstream's 401 to its authorization server's metadata.

Order (MCP authorization, RFC 9728, RFC 8414, OpenID Connect Discovery):

1. the `resource_metadata` URL from the 401's `WWW-Authenticate: Bearer ...` challenge;
2. protected-resource metadata at the path-inserted well-known URL, then at the root one;
3. for the chosen authorization server (the configured `issuer`, else the first listed), its metadata at
   `/.well-known/oauth-authorization-server{path}`, `/.well-known/openid-configuration{path}`, then
   `{path}/.well-known/openid-configuration` (root forms when the issuer has no path).

The protected-resource metadata's `resource` must be the upstream's URL, and the authorization server's `issuer`
must be exactly the issuer it was looked up by; every fetch goes through the egress guard.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from connectors.auth.egress import EgressClient
from connectors.auth.errors import DiscoveryError, IssuerMismatch

_PARAM = re.compile(r'([A-Za-z0-9_\-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def parse_bearer_challenge(header: str | None) -> dict[str, str]:
    """The auth-params of the `Bearer` challenge in a `WWW-Authenticate` value (empty when there is none)."""
    if not header:
        return {}
    start = re.search(r"(?i)(?:^|,)\s*bearer(?:\s+|$)", header)
    if start is None:
        return {}
    params: dict[str, str] = {}
    for match in _PARAM.finditer(header, start.end()):
        quoted, bare = match.group(2), match.group(3)
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        params.setdefault(match.group(1).lower(), value)
    return params


def protected_resource_urls(server_url: str, hint: str | None) -> list[str]:
    """Candidate protected-resource metadata URLs, in the order they are tried."""
    parts = urlsplit(server_url)
    base = f"{parts.scheme}://{parts.netloc}"
    urls = [hint] if hint else []
    path = parts.path.rstrip("/")
    if path:
        urls.append(f"{base}/.well-known/oauth-protected-resource{path}")
    urls.append(f"{base}/.well-known/oauth-protected-resource")
    return urls


def authorization_server_urls(issuer: str) -> list[str]:
    """Candidate authorization-server metadata URLs for an issuer, in the order they are tried."""
    parts = urlsplit(issuer)
    base = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.rstrip("/")
    if path:
        return [
            f"{base}/.well-known/oauth-authorization-server{path}",
            f"{base}/.well-known/openid-configuration{path}",
            f"{base}{path}/.well-known/openid-configuration",
        ]
    return [f"{base}/.well-known/oauth-authorization-server", f"{base}/.well-known/openid-configuration"]


def same_resource(a: str, b: str) -> bool:
    """Compare resource identifiers, ignoring a trailing slash and the case of scheme and host."""

    def norm(url: str) -> tuple[str, str, str, str]:
        p = urlsplit(url)
        return p.scheme.lower(), p.netloc.lower(), p.path.rstrip("/"), p.query

    return norm(a) == norm(b)


@dataclass(frozen=True)
class AuthServerMetadata:
    """The parts of RFC 8414 metadata the hub uses."""

    issuer: str
    token_endpoint: str
    authorization_endpoint: str | None = None
    registration_endpoint: str | None = None
    revocation_endpoint: str | None = None
    scopes_supported: tuple[str, ...] | None = None
    code_challenge_methods_supported: tuple[str, ...] = ()
    token_endpoint_auth_methods_supported: tuple[str, ...] | None = None
    client_id_metadata_document_supported: bool = False
    authorization_response_iss_parameter_supported: bool = False

    @classmethod
    def parse(cls, doc: Mapping[str, Any], expected_issuer: str) -> AuthServerMetadata:
        """Validate a metadata document fetched for `expected_issuer`.

        Raises:
            IssuerMismatch: the document's `issuer` is not exactly `expected_issuer`.
            DiscoveryError: a required member is missing or malformed.
        """
        issuer = doc.get("issuer")
        if issuer != expected_issuer:
            raise IssuerMismatch(f"authorization server metadata for {expected_issuer} names issuer {issuer!r}")
        token_endpoint = _url(doc, "token_endpoint", required=True)
        assert token_endpoint is not None
        return cls(
            issuer=expected_issuer,
            token_endpoint=token_endpoint,
            authorization_endpoint=_url(doc, "authorization_endpoint"),
            registration_endpoint=_url(doc, "registration_endpoint"),
            revocation_endpoint=_url(doc, "revocation_endpoint"),
            scopes_supported=_strings(doc, "scopes_supported"),
            code_challenge_methods_supported=_strings(doc, "code_challenge_methods_supported") or (),
            token_endpoint_auth_methods_supported=_strings(doc, "token_endpoint_auth_methods_supported"),
            client_id_metadata_document_supported=doc.get("client_id_metadata_document_supported") is True,
            authorization_response_iss_parameter_supported=doc.get("authorization_response_iss_parameter_supported")
            is True,
        )


@dataclass(frozen=True)
class Discovery:
    """What discovery found for one upstream."""

    resource: str
    """The RFC 8707 resource indicator to request tokens for."""
    metadata: AuthServerMetadata
    scopes: tuple[str, ...] = ()
    """Scopes the upstream asked for (challenge `scope`, else its `scopes_supported`)."""


async def discover(
    http: EgressClient,
    server_url: str,
    *,
    challenge: Mapping[str, str] | None = None,
    issuer: str | None = None,
) -> Discovery:
    """Find the authorization server for `server_url` and validate its metadata.

    Args:
        http: the guarded client every fetch goes through.
        server_url: the upstream MCP endpoint (the protected resource).
        challenge: the parsed `Bearer` challenge of the upstream's 401, if one was seen.
        issuer: a configured issuer: discovery must lead to it.

    Raises:
        UnsafeURL: a metadata document pointed somewhere the egress policy refuses.
        IssuerMismatch: an issuer did not match.
        DiscoveryError: nothing usable was found.
    """
    challenge = challenge or {}
    prm = await _protected_resource(http, server_url, challenge.get("resource_metadata"))
    scopes: tuple[str, ...] = ()
    if prm is not None:
        servers = _strings(prm, "authorization_servers") or ()
        if not servers:
            raise DiscoveryError(f"protected resource metadata for {server_url} lists no authorization server")
        if issuer is not None and issuer not in servers:
            raise IssuerMismatch(f"{server_url} does not list the configured issuer {issuer}")
        chosen = issuer or servers[0]
        scopes = _strings(prm, "scopes_supported") or ()
    elif issuer is not None:
        chosen = issuer
    else:
        raise DiscoveryError(f"{server_url} publishes no protected resource metadata and no issuer is configured")
    if challenge.get("scope"):
        scopes = tuple(challenge["scope"].split())
    metadata = await fetch_authorization_server(http, chosen)
    return Discovery(resource=server_url, metadata=metadata, scopes=scopes)


async def fetch_authorization_server(http: EgressClient, issuer: str) -> AuthServerMetadata:
    """Fetch and validate the metadata of the authorization server `issuer`.

    Raises:
        UnsafeURL: refused by the egress policy.
        IssuerMismatch: the document names another issuer.
        DiscoveryError: no metadata document was found.
    """
    for url in authorization_server_urls(issuer):
        doc = await _fetch_document(http, url)
        if doc is not None:
            return AuthServerMetadata.parse(doc, issuer)
    raise DiscoveryError(f"no authorization server metadata found for {issuer}")


async def _protected_resource(http: EgressClient, server_url: str, hint: str | None) -> dict[str, Any] | None:
    for url in protected_resource_urls(server_url, hint):
        doc = await _fetch_document(http, url)
        if doc is None:
            continue
        resource = doc.get("resource")
        if not isinstance(resource, str) or not same_resource(resource, server_url):
            raise DiscoveryError(f"protected resource metadata at {url} is for {resource!r}, not {server_url}")
        return doc
    return None


async def _fetch_document(http: EgressClient, url: str) -> dict[str, Any] | None:
    try:
        resp = await http.get(url)
    except TimeoutError:
        raise DiscoveryError(f"metadata fetch from {url} timed out") from None
    if resp.status != 200:
        return None
    doc = resp.json_object()
    if doc is None:
        raise DiscoveryError(f"metadata at {url} is not a JSON object")
    return doc


def _url(doc: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
    value = doc.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise DiscoveryError(f"authorization server metadata has no valid {key}")
    return value


def _strings(doc: Mapping[str, Any], key: str) -> tuple[str, ...] | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DiscoveryError(f"metadata member {key} is not a list of strings")
    return tuple(value)
