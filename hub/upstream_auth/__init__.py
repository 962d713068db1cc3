"""Outbound credentials towards upstream servers: the auth manager (headers, OAuth 2.0, per-user authorizations),
the per-user authorization links, and the encrypted token store."""
