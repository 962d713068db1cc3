"""What a change made through the admin API may make the hub read or reach.

- **Secret references** (`env:NAME`, `file:PATH`) in guardrail credentials and in run-time servers' `env`,
  `headers` and `auth` secrets must match a glob of `[admin] allowed_secret_refs` (none by default). The hub's own
  variables (`env:AGENTHUB_*`: the bootstrap admin token, the master and audit keys, the database URL) are refused
  even when listed. A file reference must be an absolute path; it is matched after `..` is resolved.
- **Remote endpoints** (a guardrail service's `endpoint`, a run-time server's `url` and its OAuth `token_url`,
  `authorization_url` and `issuer`) pass the SSRF guard of upstream OAuth (`connectors.auth.egress`): https only,
  and every address the host resolves to public. An origin matching a glob of `[admin] allowed_endpoints` may
  also use plain http and loopback or private addresses (never link-local, multicast or reserved ones);
  `[hub] insecure_loopback` still allows plain http to loopback.

Refusals are `BadRequest` naming the field and the setting. Values written in the config file are not checked:
the operator wrote them.
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Iterable

import httpx2
from pydantic import SecretStr

from connectors.auth import HeadersAuth, OAuth2Auth
from connectors.auth.egress import EgressPolicy, check_url, checked_address, origin_of
from connectors.auth.errors import UnsafeURL
from connectors.config import HttpConfig, SseConfig, StdioConfig
from hub.errors import BadRequest
from hub.guardrails import GuardrailConfig
from hub.guardrails.rules import SECRET_FIELDS
from hub.identity.oidc import AdminSection

HUB_VARIABLES = "env:AGENTHUB_"
"""Prefix of the hub's own environment variables, which the admin API never lets a change reference."""


class RemotePolicy:
    """The operator's allow-lists for one hub (`[admin]`), and whether `[hub] insecure_loopback` is set.

    Args:
        section: the `[admin]` table.
        insecure_loopback: `[hub] insecure_loopback`.
    """

    def __init__(self, section: AdminSection, *, insecure_loopback: bool = False) -> None:
        self.refs = tuple(section.allowed_secret_refs)
        self.endpoints = tuple(section.allowed_endpoints)
        self.insecure_loopback = insecure_loopback

    # -- secret references -------------------------------------------------------------------------------------

    def check_reference(self, value: str, where: str) -> None:
        """Refuse a secret reference the operator did not allow (a literal value is not a reference: no check).

        Raises:
            BadRequest: a reference to the hub's own variables, a relative file, or one no glob matches.
        """
        if not value.startswith(("env:", "file:")):
            return
        if value[: len(HUB_VARIABLES)].upper() == HUB_VARIABLES.upper():
            raise BadRequest(
                f"{where}: {value!r} names one of the hub's own variables (env:AGENTHUB_*), which changes made "
                "through the admin API may never use, whatever [admin] allowed_secret_refs lists"
            )
        target = value
        if value.startswith("file:"):
            path = value[len("file:") :]
            if not path.startswith("/"):
                raise BadRequest(
                    f"{where}: a file reference given through the admin API must be an absolute path "
                    "(allowed ones are listed in [admin] allowed_secret_refs)"
                )
            target = "file:" + posixpath.normpath(path)
        if not any(fnmatch.fnmatchcase(target, pattern) for pattern in self.refs):
            raise BadRequest(
                f"{where}: the secret reference {value!r} is not allowed through the admin API (the operator "
                "lists the allowed ones in [admin] allowed_secret_refs)"
            )

    def _check_references(self, values: Iterable[tuple[str, str]]) -> None:
        for where, value in values:
            self.check_reference(value, where)

    # -- endpoints -----------------------------------------------------------------------------------------------

    def listed(self, url: httpx2.URL) -> bool:
        """Whether the URL's origin matches a glob of `[admin] allowed_endpoints` (a glob without a port also
        matches the scheme's default port)."""
        origin = origin_of(url)
        default = url.port is None or url.port == (443 if url.scheme == "https" else 80)
        forms = (origin, f"{url.scheme}://{url.host}") if default else (origin,)
        return any(fnmatch.fnmatchcase(form, pattern) for form in forms for pattern in self.endpoints)

    async def check_endpoint(self, url: str, where: str) -> None:
        """Refuse a remote endpoint the SSRF guard refuses, unless the operator listed its origin.

        Raises:
            BadRequest: the URL is malformed, not https (outside the lists), or resolves to an address it may not
                reach.
        """
        try:
            parsed = httpx2.URL(url)
            if self.listed(parsed):
                if parsed.scheme not in ("http", "https") or not parsed.host or parsed.userinfo:
                    raise UnsafeURL(f"refused {url!r}: only http(s) URLs with a host and no credentials")
                policy = EgressPolicy(insecure_loopback=True, trusted_origins=frozenset({origin_of(parsed)}))
            else:
                policy = EgressPolicy(insecure_loopback=self.insecure_loopback)
                parsed = check_url(parsed, policy)
            await checked_address(parsed, policy)
        except (UnsafeURL, httpx2.InvalidURL, TypeError) as exc:
            reason = exc.message if isinstance(exc, UnsafeURL) else "refused a malformed URL"
            raise BadRequest(
                f"{where}: {reason} (origins that may use plain http or loopback and private addresses are listed "
                "by the operator in [admin] allowed_endpoints)"
            ) from None

    # -- whole configurations -------------------------------------------------------------------------------------

    async def check_server(self, config: StdioConfig | SseConfig | HttpConfig) -> None:
        """Check a run-time server's endpoints and secret references.

        Raises:
            BadRequest: see `check_reference` and `check_endpoint`.
        """
        where = f"servers.{config.name}"
        if isinstance(config, StdioConfig):
            self._check_references((f"{where}.env.{k}", v) for k, v in config.env.items())
            return
        await self.check_endpoint(config.url, f"{where}.url")
        self._check_references((f"{where}.headers.{k}", v) for k, v in config.headers.items())
        auth = config.auth
        if isinstance(auth, HeadersAuth):
            self._check_references((f"{where}.auth.headers.{k}", v) for k, v in auth.headers.items())
        elif isinstance(auth, OAuth2Auth):
            if auth.client_secret is not None:
                self.check_reference(auth.client_secret, f"{where}.auth.client_secret")
            for name in ("token_url", "authorization_url", "issuer"):
                value: str | None = getattr(auth, name)
                if value is not None:
                    await self.check_endpoint(value, f"{where}.auth.{name}")

    async def check_guardrail(self, config: GuardrailConfig) -> None:
        """Check a guardrail's service endpoint and credential references.

        Raises:
            BadRequest: see `check_reference` and `check_endpoint`.
        """
        where = f"guardrails.{config.name}"
        for name in SECRET_FIELDS:
            secret: SecretStr | None = getattr(config, name)
            if secret is not None:
                self.check_reference(secret.get_secret_value(), f"{where}.{name}")
        if config.endpoint is not None:
            await self.check_endpoint(config.endpoint, f"{where}.endpoint")
