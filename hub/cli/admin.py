"""Admin commands of the `agenthub` CLI: the audit log, run-time servers, key updates. They work on the database.

```
agenthub audit verify  [--config FILE] [--input EXPORT.jsonl]   exit 0 intact, 1 names the first bad entry
agenthub audit export  [--config FILE] --format json|jsonl|syslog [--output FILE]
agenthub audit purge   [--config FILE] --days N                  retention now, with a signed checkpoint
agenthub servers add    NAME --transport stdio --command CMD [--arg A ...] [--env K=V ...]
agenthub servers add    NAME --transport http|sse --url URL [--header K=V ...]
agenthub servers remove NAME
agenthub servers import FILE [--name NAME] [--remote] [--add]   an entry from the MCP registry's server.json format
agenthub keys update    NAME [--tools GLOB ...] [--models GLOB ...] [--team T] [--expires-days N]
```
Running hubs that share the database pick up server and key changes within a second. Every change is audited
with the actor `cli:<user>`, in the same database transaction as the change.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlmodel import Session

from hub.audit.adminlog import AuditKeyError, AuditLog, audit_keyring
from hub.audit.chain import AuditEvent, Checkpoint
from hub.audit.export import parse_jsonl, to_json, to_jsonl, to_syslog
from hub.control import SERVER_CONFIG, config_dict
from hub.settings import Settings, load_settings
from hub.store.admin_tables import AdminStore
from hub.store.sql import SqlStore


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


class AdminContext:
    """The database, admin tables and audit log for one CLI command."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sql = SqlStore(settings.database_url())
        self.store = AdminStore(self.sql.engine)
        self.audit = AuditLog(self.store, audit_keyring(settings.audit, settings.base_dir))

    def event(self, action: str, resource_type: str, resource_id: str | None, before: Any, after: Any) -> AuditEvent:
        """The audit event of a change made by this command."""
        actor = f"cli:{getpass.getuser()}"
        return AuditEvent(actor, action, resource_type, resource_id, before, after, None, "agenthub-cli")

    def record(self, action: str, resource_type: str, resource_id: str | None, before: Any, after: Any) -> None:
        """Audit something that is not a change of the database (an export), or a change made elsewhere."""
        self.audit.append_sync(self.event(action, resource_type, resource_id, before, after))

    def change(
        self, write: Callable[[Session], object], action: str, resource_type: str, resource_id: str | None,
        before: Any, after: Any,
    ) -> None:  # fmt: skip
        """Make a change with `write` and store its audit entry in the same transaction."""
        event = self.event(action, resource_type, resource_id, before, after)
        self.audit.transact_sync(write, lambda _result: event)

    def close(self) -> None:
        self.sql.close()


def open_context(args: argparse.Namespace) -> AdminContext:
    return AdminContext(load_settings(args.config))


def audit_change(
    config: str, action: str, resource_type: str, resource_id: str | None, before: Any, after: Any
) -> None:
    """Audit a change another CLI command made (e.g. `keys create`)."""
    ctx = AdminContext(load_settings(config))
    try:
        ctx.record(action, resource_type, resource_id, before, after)
    finally:
        ctx.close()


# -- audit -----------------------------------------------------------------------------------------------------


def cmd_audit_verify(args: argparse.Namespace) -> int:
    ctx = open_context(args)
    try:
        entries = None
        if args.input:
            entries = parse_jsonl(Path(args.input).read_text(encoding="utf-8"))
        result = ctx.audit.verify(entries)
    except (AuditKeyError, ValueError, OSError) as exc:
        _err(f"error: {exc}")
        return 2
    finally:
        ctx.close()
    if result.ok:
        _out(f"audit log intact: {result.checked} entries verified")
        return 0
    _err(f"audit log TAMPERED: first bad entry seq {result.first_bad_seq}: {result.reason}")
    return 1


def cmd_audit_export(args: argparse.Namespace) -> int:
    ctx = open_context(args)
    try:
        entries = ctx.audit.entries()
        if args.format == "json":
            text = to_json(entries) + "\n"
        elif args.format == "jsonl":
            text = to_jsonl(entries)
        else:
            text = "".join(to_syslog(e) + "\n" for e in entries)
        ctx.record("audit.export", "audit", None, None, {"format": args.format, "entries": len(entries)})
    finally:
        ctx.close()
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        _err(f"exported {len(entries)} entries to {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_audit_purge(args: argparse.Namespace) -> int:
    ctx = open_context(args)

    def event(checkpoint: Checkpoint, days: float) -> AuditEvent:
        return ctx.event("audit.purge", "audit", None, None, {"through_seq": checkpoint.seq, "retention_days": days})

    try:
        checkpoint = ctx.audit.purge_sync(args.days, event=event)
    finally:
        ctx.close()
    _out(f"purged through seq {checkpoint.seq}" if checkpoint else "nothing to purge")
    return 0


# -- servers ---------------------------------------------------------------------------------------------------


def _pairs(items: list[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{what} must be KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def cmd_servers_add(args: argparse.Namespace) -> int:
    ctx = open_context(args)
    try:
        raw: dict[str, Any] = {"name": args.name, "transport": args.transport}
        if args.transport == "stdio":
            raw.update(command=args.command, args=args.arg or [], env=_pairs(args.env, "--env"))
        else:
            raw.update(url=args.url, headers=_pairs(args.header, "--header"))
        config = config_dict(SERVER_CONFIG.validate_python(raw))
        if args.name in ctx.settings.servers or ctx.store.get_server(args.name) is not None:
            _err(f"error: a server named '{args.name}' exists already")
            return 1
        write = functools.partial(ctx.store.save_server, args.name, config)
        ctx.change(write, "server.create", "server", args.name, None, {"name": args.name, **config})
    except ValidationError as exc:
        _err("error: " + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
        return 1
    except ValueError as exc:
        _err(f"error: {exc}")
        return 1
    finally:
        ctx.close()
    _out(f"Added server '{args.name}'; running hubs start it within a second.")
    return 0


def cmd_servers_remove(args: argparse.Namespace) -> int:
    ctx = open_context(args)
    try:
        row = ctx.store.get_server(args.name)
        if row is None:
            where = " (it is declared in the config file)" if args.name in ctx.settings.servers else ""
            _err(f"error: no run-time server named '{args.name}'{where}")
            return 1
        write = functools.partial(ctx.store.delete_server, args.name)
        ctx.change(write, "server.delete", "server", args.name, json.loads(row.config), None)
    finally:
        ctx.close()
    _out(f"Removed server '{args.name}'.")
    return 0


def cmd_servers_import(args: argparse.Namespace) -> int:
    """Print the `[servers.NAME]` entry for a `server.json` (what to fill listed above it); with `--add`, add it
    at run time as `servers add` does (the `env:` references resolve in the environment of the hubs that run it)."""
    from hub.cli.server_import import ServerJsonError, import_server, to_toml

    try:
        with open(args.file, "rb") as handle:
            document = json.loads(handle.read())
        imported = import_server(document, name=args.name, prefer="remote" if args.remote else "package")
        config = config_dict(SERVER_CONFIG.validate_python({**imported.config, "name": imported.name}))
    except OSError as exc:
        _err(f"error: cannot read {args.file}: {exc.strerror or exc}")
        return 1
    except json.JSONDecodeError as exc:
        _err(f"error: {args.file} is not JSON: {exc}")
        return 1
    except ServerJsonError as exc:
        _err(f"error: {args.file}: {exc}")
        return 1
    except ValidationError as exc:
        _err("error: " + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
        return 1
    if not args.add:
        sys.stdout.write(to_toml(imported))
        return 0
    ctx = open_context(args)
    try:
        if imported.name in ctx.settings.servers or ctx.store.get_server(imported.name) is not None:
            _err(f"error: a server named '{imported.name}' exists already (choose another with --name)")
            return 1
        write = functools.partial(ctx.store.save_server, imported.name, config)
        ctx.change(write, "server.create", "server", imported.name, None, {"name": imported.name, **config})
    finally:
        ctx.close()
    missing = [v.name for v in imported.variables if v.kind == "env"]
    _out(f"Added server '{imported.name}'; running hubs start it within a second.")
    if missing:
        _out("It reads these from the hub's environment: " + ", ".join(missing))
    placeholders = [v.name for v in imported.variables if v.kind == "argument"]
    if placeholders:
        _out("Its arguments still hold placeholders: " + ", ".join(f"{{{p}}}" for p in placeholders))
    return 0


# -- keys ------------------------------------------------------------------------------------------------------


def cmd_keys_update(args: argparse.Namespace) -> int:
    ctx = open_context(args)
    try:
        row = ctx.sql.get_key(args.name)
        if row is None or row.revoked_at is not None:
            _err(f"error: no active key named '{args.name}'")
            return 1
        policy: dict[str, Any] = json.loads(row.policy)
        before = {**policy, "expires_at": row.expires_at.isoformat() if row.expires_at else None}
        for field in ("tools", "models", "team"):
            value = getattr(args, field)
            if value is not None:
                policy[field] = value
        expires = row.expires_at
        if args.expires_days is not None:
            expires = datetime.now(UTC) + timedelta(days=args.expires_days)
        after = {**policy, "expires_at": expires.isoformat() if expires else None}
        write = functools.partial(ctx.sql.update_key, row.id, policy, expires)
        ctx.change(lambda s: write(session=s), "key.update", "key", row.id, before, after)
    finally:
        ctx.close()
    _out(f"Updated key '{args.name}'.")
    return 0


def add_admin_commands(sub: Any, common: argparse.ArgumentParser, servers: argparse.ArgumentParser, keys: Any) -> None:
    """Register `audit ...`, `servers add/remove` and `keys update` on the CLI's parsers."""
    audit = sub.add_parser("audit", help="the admin audit log").add_subparsers(dest="audit_command", required=True)
    verify = audit.add_parser("verify", parents=[common], help="check the HMAC chain; exit 1 names the first bad entry")
    verify.add_argument("--input", help="verify a JSONL export instead of the database")
    verify.set_defaults(func=cmd_audit_verify)
    export = audit.add_parser("export", parents=[common], help="export every entry")
    export.add_argument("--format", choices=("json", "jsonl", "syslog"), default="jsonl")
    export.add_argument("--output", help="file to write (default: stdout)")
    export.set_defaults(func=cmd_audit_export)
    purge = audit.add_parser("purge", parents=[common], help="delete entries older than N days (signed checkpoint)")
    purge.add_argument("--days", type=float, required=True)
    purge.set_defaults(func=cmd_audit_purge)

    server_cmds = servers.add_subparsers(dest="servers_command")
    add = server_cmds.add_parser("add", parents=[common], help="add an upstream at run time (stored in the database)")
    add.add_argument("name")
    add.add_argument("--transport", choices=("stdio", "http", "sse"), required=True)
    add.add_argument("--command", help="stdio: the program to start")
    add.add_argument("--arg", action="append", help="stdio: one argument (repeat)")
    add.add_argument("--env", action="append", metavar="K=V", help="stdio: environment (values may be env:NAME)")
    add.add_argument("--url", help="http/sse: the server's URL")
    add.add_argument("--header", action="append", metavar="K=V", help="http/sse: a header (values may be env:NAME)")
    add.set_defaults(func=cmd_servers_add)
    remove = server_cmds.add_parser("remove", parents=[common], help="remove a run-time upstream")
    remove.add_argument("name")
    remove.set_defaults(func=cmd_servers_remove)
    imported = server_cmds.add_parser(
        "import", parents=[common], help="a server entry from the MCP registry's server.json format"
    )
    imported.add_argument("file", help="a server.json file")
    imported.add_argument("--name", help="the entry's name (default: the last part of the registry name)")
    imported.add_argument("--remote", action="store_true", help="prefer its remote to its package when it has both")
    imported.add_argument("--add", action="store_true", help="add it at run time instead of printing it")
    imported.set_defaults(func=cmd_servers_import)

    update = keys.add_parser("update", parents=[common], help="change a key's filters or expiry (effective at once)")
    update.add_argument("name", help="key name or id")
    update.add_argument("--tools", nargs="*", default=None, metavar="GLOB")
    update.add_argument("--models", nargs="*", default=None, metavar="GLOB")
    update.add_argument("--team", default=None)
    update.add_argument("--expires-days", type=float, default=None)
    update.set_defaults(func=cmd_keys_update)
