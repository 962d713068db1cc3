"""The `agenthub` command line.

```
agenthub serve   [--config FILE] [--listen HOST:PORT] [--workers N]
agenthub stdio   [--config FILE | --url URL [--connect-timeout S]] [--server NAME|v/NAME]   key from AGENTHUB_KEY
agenthub keys    create --name NAME [--tools GLOB ...] | list | revoke NAME
agenthub servers [--config FILE] [--json]
agenthub config  check [FILE]
agenthub sandbox build [--fuel]                           the Code Mode guest, ahead of the first start
agenthub auth    login|logout SERVER [--subject KEY_NAME]
agenthub logs    export [--since 24h] [--until T] [--format jsonl|csv] [--output FILE] | tail [--interval S]
```
Every command takes `--config FILE` (default `./agenthub.toml`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import orjson

from hub.settings import DEFAULT_CONFIG, ConfigError, Settings, load_settings, parse_listen

if TYPE_CHECKING:
    from hub.app import Hub

logger = logging.getLogger("agenthub")


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _load(args: argparse.Namespace, **overrides: Any) -> Settings:
    return load_settings(args.config, **overrides)


# -- serve ------------------------------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    """One process serving, or, with more than one worker, the supervisor (`hub.runtime.supervisor`) in its place."""
    settings = _load(args, listen=args.listen)
    from hub.runtime.serving import key_line, open_checked, serve_hub, serving_line, settle_gc, upstream_lines
    from hub.runtime.worker import worker_count

    if worker_count(settings, args.workers) > 1:
        from hub.runtime.supervisor import exec_supervisor

        exec_supervisor(args.config, listen=args.listen, workers=args.workers)  # does not return
    host, port = parse_listen(settings.hub.listen)

    def announce(hub: Hub) -> None:
        _out(serving_line(host, port))
        for generated in hub.generated_keys:
            _out(key_line(generated.name, generated.secret))
        for line in upstream_lines(hub):
            _out(line)
        settle_gc()

    serve_hub(settings, open_checked(settings), on_ready=announce)
    return 0


def _worker_number(value: str) -> int:
    from hub.settings import MAX_WORKERS

    if not value.isdigit() or not 1 <= int(value) <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"a number from 1 to {MAX_WORKERS}, got {value!r}")
    return int(value)


# -- stdio ------------------------------------------------------------------------------------------------------


def cmd_stdio(args: argparse.Namespace) -> int:
    from hub.cli.stdio import KEY_ENV, endpoint_url, run_bridge, serve_embedded

    if args.url:
        return run_bridge(endpoint_url(args.url, args.server), args.connect_timeout)
    settings = _load(args)
    anyio.run(serve_embedded, settings, KEY_ENV, args.server)
    return 0


# -- keys -------------------------------------------------------------------------------------------------------


def _store(args: argparse.Namespace) -> Any:
    from hub.store.sql import SqlStore

    return SqlStore(_load(args).database_url())


def cmd_keys_create(args: argparse.Namespace) -> int:
    from hub.governance.keys import new_secret
    from hub.store.sql import DuplicateName

    store = _store(args)
    secret = new_secret()
    expires = datetime.now(UTC) + timedelta(days=args.expires_days) if args.expires_days else None
    try:
        policy: dict[str, Any] = {"tools": args.tools or [], "models": args.models or []}
        if args.team:
            policy["team"] = args.team
        row = store.create_key(args.name, secret, policy, source="cli", expires_at=expires)
    except DuplicateName as exc:
        _err(f"error: {exc}")
        return 1
    finally:
        store.close()
    from hub.cli.admin import audit_change

    audit_change(args.config, "key.create", "key", row.id, None, {"name": row.name, "prefix": row.prefix, **policy})
    _out(f"Created key '{row.name}' ({row.id}). Its secret is shown once:")
    _out(secret)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    store = _store(args)
    rows = store.list_keys(include_revoked=args.all)
    store.close()
    if args.json:
        _out(
            orjson.dumps(
                [
                    {
                        "id": r.id,
                        "name": r.name,
                        "prefix": r.prefix,
                        "policy": orjson.loads(r.policy),
                        "source": r.source,
                        "revoked": r.revoked_at is not None,
                    }
                    for r in rows
                ]
            ).decode()
        )
        return 0
    for r in rows:
        state = " (revoked)" if r.revoked_at else ""
        tools = orjson.loads(r.policy).get("tools") or []
        _out(f"{r.name:24} {r.id:22} {r.prefix}...  tools={','.join(tools) or '-'}{state}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    store = _store(args)
    done = store.revoke_key(args.name)
    store.close()
    if not done:
        _err(f"error: no active key named '{args.name}'")
        return 1
    from hub.cli.admin import audit_change

    audit_change(args.config, "key.revoke", "key", args.name, None, {"revoked": True})
    _out(f"Revoked key '{args.name}'.")
    return 0


# -- servers ----------------------------------------------------------------------------------------------------


def cmd_servers(args: argparse.Namespace) -> int:
    settings = _load(args)
    rows = _servers_from_running_hub(settings)
    if rows is None:
        rows = anyio.run(_servers_embedded, settings)
    if args.json:
        _out(orjson.dumps(rows).decode())
        return 0
    for row in rows:
        error = f"  {row['error']}" if row.get("error") and row["state"] != "ready" else ""
        _out(f"{row['name']:20} {row['transport']:6} {row['state']:10} {row['tools']:4} tools{error}")
    return 0


def _servers_from_running_hub(settings: Settings) -> list[dict[str, Any]] | None:
    import httpx2

    token = os.environ.get("AGENTHUB_ADMIN_TOKEN")
    if not token:
        return None
    host, port = parse_listen(settings.hub.listen)
    try:
        response = httpx2.get(
            f"http://{host}:{port}/api/v1/servers", headers={"Authorization": f"Bearer {token}"}, timeout=3
        )
    except httpx2.HTTPError:
        return None
    if response.status_code != 200:
        return None
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def _servers_embedded(settings: Settings) -> list[dict[str, Any]]:
    from connectors.registry import Registry

    registry = Registry()
    rows: list[dict[str, Any]] = []
    async with anyio.create_task_group() as tg:
        await tg.start(registry.run, list(settings.servers.values()))
        await registry.wait_ready(max(settings.hub.upstream_start_timeout_s, 1.0))
        rows = registry.status()
        for upstream in registry.upstreams.values():
            upstream.stop()
        tg.cancel_scope.cancel()
    return rows


# -- sandbox ----------------------------------------------------------------------------------------------------


def cmd_sandbox_build(args: argparse.Namespace) -> int:
    """Build (or find) the compiled Code Mode guest ahead of the first start, e.g. in a container image."""
    from sandbox.build import GuestBuildError, cached_artifact, ensure_artifact

    if cached_artifact(fuel=args.fuel) is None:
        _out("building the Code Mode sandbox guest (first start only)…")
    try:
        artifact = ensure_artifact(fuel=args.fuel)
    except (GuestBuildError, OSError) as exc:
        _err(f"error: Code Mode is unavailable: {exc}")
        return 1
    done = f"built in {artifact.seconds:.1f} s" if artifact.built else "already built"
    _out(f"Code Mode sandbox guest {done}: {artifact.path}")
    return 0


# -- config -----------------------------------------------------------------------------------------------------


def cmd_config_check(args: argparse.Namespace) -> int:
    settings = load_settings(args.file or args.config)
    from hub.runtime.worker import worker_count

    workers = worker_count(settings, None)
    _out(
        f"{settings.path}: OK ({len(settings.servers)} servers, {len(settings.keys)} keys, "
        f"listen {settings.hub.listen}, {workers} worker{'s' if workers > 1 else ''})"
    )
    _unpriced(settings)
    return 0


def _unpriced(settings: Settings) -> None:
    """List the deployments without a price: where a USD budget applies, calls to them are refused."""
    if not settings.providers:
        return
    from llm.config import LLMConfig
    from llm.pricing import unpriced_deployments

    config = LLMConfig(providers=settings.providers, models=settings.models, prices=settings.prices)
    missing = unpriced_deployments(config)
    if missing:
        _out(f"{len(missing)} deployments without a price (refused where a USD budget applies; add [prices] entries):")
        for name in missing:
            _out(f"  {name}")


# -- parser -----------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=os.environ.get("AGENTHUB_CONFIG", DEFAULT_CONFIG), help="config file")
    parser = argparse.ArgumentParser(prog="agenthub", description="AgentHub: one governed gateway for AI traffic.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", parents=[common], help="run the hub")
    serve.add_argument("--listen", help="HOST:PORT (overrides [hub].listen)")
    serve.add_argument(
        "--workers",
        type=_worker_number,
        default=None,
        help="worker processes (overrides [hub].workers); 1: no supervisor",
    )
    serve.set_defaults(func=cmd_serve)

    stdio = sub.add_parser("stdio", parents=[common], help="serve MCP on stdin/stdout")
    from hub.cli.stdio import add_arguments as add_stdio_arguments

    add_stdio_arguments(stdio)
    stdio.set_defaults(func=cmd_stdio)

    keys = sub.add_parser("keys", help="manage virtual keys").add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create", parents=[common], help="create a key; prints its secret once")
    create.add_argument("--name", required=True)
    create.add_argument("--tools", nargs="*", default=[], metavar="GLOB", help="globs over exposed tool names")
    create.add_argument("--models", nargs="*", default=[], metavar="GLOB", help="globs over models")
    create.add_argument("--team", default=None)
    create.add_argument("--expires-days", type=float, default=None)
    create.set_defaults(func=cmd_keys_create)
    listing = keys.add_parser("list", parents=[common], help="list keys")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_keys_list)
    revoke = keys.add_parser("revoke", parents=[common], help="revoke a key (effective at once)")
    revoke.add_argument("name", help="key name or id")
    revoke.set_defaults(func=cmd_keys_revoke)

    servers = sub.add_parser("servers", parents=[common], help="health and tool counts per upstream")
    servers.add_argument("--json", action="store_true")
    servers.set_defaults(func=cmd_servers)

    config = sub.add_parser("config", help="configuration tools").add_subparsers(dest="config_command", required=True)
    check = config.add_parser("check", parents=[common], help="validate a config file")
    check.add_argument("file", nargs="?", default=None)
    check.set_defaults(func=cmd_config_check)

    sandbox = sub.add_parser("sandbox", help="the Code Mode sandbox").add_subparsers(
        dest="sandbox_command", required=True
    )
    build = sandbox.add_parser("build", help="build the Code Mode guest ahead of the first start; prints where it went")
    build.add_argument("--fuel", action="store_true", help="the variant with fuel metering")
    build.set_defaults(func=cmd_sandbox_build)
    from hub.cli.admin import add_admin_commands

    add_admin_commands(sub, common, servers, keys)
    from hub.cli.auth import add_auth_commands

    add_auth_commands(sub, common)
    from hub.cli.logs import add_logs_commands

    add_logs_commands(sub, common)
    from hub.cli.users import add_users_commands

    add_users_commands(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from hub.runtime.serving import configure_logging

    configure_logging()
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        _err(f"config error: {exc}")
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
