"""Inbound identity: admin tokens and sessions, OIDC admin login."""
