"""Outbound credentials towards upstream servers: the auth manager (headers, OAuth 2.0, per-user authorizations)
and its encrypted token store."""
