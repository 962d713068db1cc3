"""Errors raised while authenticating to upstream MCP servers.

```
AuthError
├── AuthConfigError            the configuration cannot work (no way to register a client, bad secret reference)
├── UnsafeURL                  an egress check refused a URL (scheme, address range, redirect, size)
├── DiscoveryError             protected-resource or authorization-server metadata missing or invalid
│   └── IssuerMismatch         an `issuer` or `iss` differs from the one it was fetched for
├── RegistrationError          dynamic client registration failed
├── TokenRequestFailed         the token endpoint refused (carries the OAuth `error` code)
├── AuthorizationRequired      a subject must (re-)authorize in a browser; carries the URL
├── InvalidAuthorizationState  an authorization callback with an unknown, used or expired `state`
└── MasterKeyError             AGENTHUB_MASTER_KEY missing, too short, or not the key the tokens were sealed with
```

Messages never contain tokens or secrets.
"""

from __future__ import annotations


class AuthError(Exception):
    """Base class of every upstream-authentication error."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AuthConfigError(AuthError):
    """The auth configuration of an upstream cannot work."""


class UnsafeURL(AuthError):
    """An outbound URL was refused by the egress policy (SSRF guard)."""


class DiscoveryError(AuthError):
    """Authorization metadata could not be discovered or did not validate."""


class IssuerMismatch(DiscoveryError):
    """An authorization server's issuer differs from the issuer it was looked up by."""


class RegistrationError(AuthError):
    """Registering the hub as an OAuth client failed."""


class TokenRequestFailed(AuthError):
    """The token endpoint answered with an error.

    Attributes:
        error: the OAuth error code (`invalid_grant`, `invalid_client`...), or `http_<status>`.
        status: the HTTP status of the answer.
    """

    def __init__(self, message: str, *, error: str, status: int) -> None:
        super().__init__(message)
        self.error = error
        self.status = status


class AuthorizationRequired(AuthError):
    """The subject has no usable token for this upstream and must authorize at `url`.

    Attributes:
        url: the authorization URL to open in a browser (state bound to the subject, single use).
        server: the upstream's name.
        subject: who must authorize.
    """

    def __init__(self, url: str, *, server: str, subject: str, reason: str = "authorization required") -> None:
        super().__init__(f"upstream '{server}': {reason}; authorize at {url}")
        self.url = url
        self.server = server
        self.subject = subject
        self.reason = reason


class InvalidAuthorizationState(AuthError):
    """An authorization callback carried a `state` that is unknown, already used or expired."""


class MasterKeyError(AuthError):
    """The master key for tokens at rest is missing, malformed or wrong."""
