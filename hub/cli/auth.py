"""Upstream OAuth commands of the `agenthub` CLI.

```
agenthub auth login  SERVER [--subject KEY_NAME] [--config FILE]   prints the URL to open in a browser
agenthub auth logout SERVER [--subject KEY_NAME] [--config FILE]   deletes the stored tokens
```
Without `--subject` the command concerns the hub's own identity at the server (client-wide authorization code
grants, and the catalog session of per-user servers). With `AGENTHUB_ADMIN_TOKEN` set and the hub running, the
command goes through the admin API; otherwise it works on the database directly (which needs
`AGENTHUB_MASTER_KEY`), and the running hub that serves `/oauth/callback` finishes the authorization.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import anyio
import httpx2
from pydantic import ValidationError

from connectors.auth import MemoryTokenStore
from connectors.config import HttpConfig, SseConfig, StdioConfig
from connectors.registry import Registry
from hub.control import SERVER_CONFIG
from hub.errors import HubError
from hub.settings import ConfigError, Settings, load_settings, parse_listen
from hub.store.admin_tables import AdminStore
from hub.store.sql import SqlStore
from hub.upstream_auth.manager import HubAuth, open_token_store


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _via_api(settings: Settings, action: str, server: str, subject: str | None) -> dict[str, Any] | None:
    """Ask the running hub's admin API; None when no admin token is set or the hub does not answer."""
    token = os.environ.get("AGENTHUB_ADMIN_TOKEN")
    if not token:
        return None
    host, port = parse_listen(settings.hub.listen)
    shown = f"[{host}]" if ":" in host else host
    try:
        response = httpx2.post(
            f"http://{shown}:{port}/api/v1/servers/{server}/auth/{action}",
            json={"subject": subject},
            headers={"Authorization": f"Bearer {token}"},
            timeout=20,
        )
    except httpx2.HTTPError:
        return None
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200:
        raise HubError(str(body.get("error", {}).get("message", f"the hub answered HTTP {response.status_code}")))
    return body


def _servers(settings: Settings, sql: SqlStore) -> dict[str, StdioConfig | SseConfig | HttpConfig]:
    servers: dict[str, StdioConfig | SseConfig | HttpConfig] = dict(settings.servers)
    for row in AdminStore(sql.engine).servers():
        if row.name not in servers:
            try:
                servers[row.name] = SERVER_CONFIG.validate_python({**json.loads(row.config), "name": row.name})
            except ValidationError:
                continue
    return servers


async def _embedded(settings: Settings, action: str, server: str, subject: str | None) -> dict[str, Any]:
    sql = SqlStore(settings.database_url())
    try:
        servers = _servers(settings, sql)
        if server not in servers:
            raise HubError(f"no server named '{server}'")
        store = open_token_store(settings, sql.engine)
        if isinstance(store, MemoryTokenStore):
            raise ConfigError("set AGENTHUB_MASTER_KEY (the hub keeps upstream tokens encrypted in its database)")
        key_id: str | None = None
        if subject is not None:
            row = sql.get_key(subject)
            if row is None or row.revoked_at is not None:
                raise HubError(f"no active key named '{subject}'")
            key_id = row.id
        auth = HubAuth(settings, store, Registry())
        try:
            auth.check({server: servers[server]})
            if action == "login":
                url = await auth.login_url(server, key_id)
                return {"server": server, "subject": key_id, "url": url, "redirect_uri": auth.redirect_uri}
            await auth.logout(server, key_id)
            return {"server": server, "subject": key_id, "signed_out": True}
        finally:
            await auth.aclose()
    finally:
        sql.close()


def cmd_auth(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    try:
        result = _via_api(settings, args.auth_command, args.server, args.subject)
        if result is None:
            result = anyio.run(_embedded, settings, args.auth_command, args.server, args.subject)
    except HubError as exc:
        _err(f"error: {exc.message}")
        return 1
    who = f"key '{args.subject}'" if args.subject else "the hub's own identity"
    if args.auth_command == "logout":
        _out(f"Signed {who} out of '{args.server}'.")
        return 0
    _out(f"Open this URL in a browser to authorize {who} at '{args.server}' (valid for 10 minutes):")
    _out(str(result["url"]))
    _out(f"The authorization server sends the browser back to {result['redirect_uri']}; the hub must be running.")
    return 0


def add_auth_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register `auth login` and `auth logout`."""
    auth = sub.add_parser("auth", help="authorize the hub at OAuth upstreams")
    commands = auth.add_subparsers(dest="auth_command", required=True)
    for action, text in (("login", "print the URL that authorizes"), ("logout", "delete the stored tokens")):
        parser = commands.add_parser(action, parents=[common], help=f"{text} (a key, or the hub's own identity)")
        parser.add_argument("server")
        parser.add_argument("--subject", metavar="KEY_NAME", help="the virtual key (per-user servers)")
        parser.set_defaults(func=cmd_auth)
