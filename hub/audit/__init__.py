"""Audit: the request log (one row per governed call) and the admin chain (HMAC-sealed admin changes, export,
forwarding to syslog)."""
