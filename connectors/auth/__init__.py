"""Authentication to upstream MCP servers: static headers, OAuth 2.0 (client credentials, authorization code with
PKCE), discovery, client registration, refresh, and an SSRF guard for every fetch it makes. Governance-free."""

from connectors.auth.config import SHARED_SUBJECT, AuthConfig, HeadersAuth, NoAuth, OAuth2Auth, resolve_auth_secrets
from connectors.auth.crypto import MASTER_KEY_ENV, TokenCipher
from connectors.auth.egress import EgressClient, EgressPolicy
from connectors.auth.errors import (
    AuthConfigError,
    AuthError,
    AuthorizationRequired,
    DiscoveryError,
    InvalidAuthorizationState,
    IssuerMismatch,
    MasterKeyError,
    RegistrationError,
    TokenRequestFailed,
    UnsafeURL,
)
from connectors.auth.httpauth import HeadersHttpAuth, OAuth2HttpAuth
from connectors.auth.manager import STATE_TTL_S, UpstreamAuth
from connectors.auth.oauth import ClientIdentity, TokenSet, client_metadata_document
from connectors.auth.registry import UpstreamAuths, callback_params
from connectors.auth.store import MemoryTokenStore, PendingAuthorization, TokenRecord, TokenStore

__all__ = [
    "MASTER_KEY_ENV",
    "SHARED_SUBJECT",
    "STATE_TTL_S",
    "AuthConfig",
    "AuthConfigError",
    "AuthError",
    "AuthorizationRequired",
    "ClientIdentity",
    "DiscoveryError",
    "EgressClient",
    "EgressPolicy",
    "HeadersAuth",
    "HeadersHttpAuth",
    "InvalidAuthorizationState",
    "IssuerMismatch",
    "MasterKeyError",
    "MemoryTokenStore",
    "NoAuth",
    "OAuth2Auth",
    "OAuth2HttpAuth",
    "PendingAuthorization",
    "RegistrationError",
    "TokenCipher",
    "TokenRecord",
    "TokenRequestFailed",
    "TokenSet",
    "TokenStore",
    "UnsafeURL",
    "UpstreamAuth",
    "UpstreamAuths",
    "callback_params",
    "client_metadata_document",
    "resolve_auth_secrets",
]
