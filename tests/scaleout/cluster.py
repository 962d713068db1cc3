"""A scale-out cluster for tests: N `agenthub serve` replicas on one PostgreSQL and one Redis, behind haproxy.

    with shared_services() as services:
        async with cluster(services, tmp_path, replicas=2, config=CONFIG) as hubs:
            async with mcp_session(hubs.url("/mcp"), KEY, seen=hubs.seen) as client:
                ...

haproxy balances round-robin with no stickiness and closes the server side after each response
(`option http-server-close`), so consecutive requests of one client connection go to different replicas. Each
replica runs with `AGENTHUB_REPLICA_NAME` = `r0`, `r1`, ... and names itself in the `x-agenthub-replica` header of
its MCP responses: `Served` records, per response, which replica answered, so a test can prove the spread.
Every process is started on a free 127.0.0.1 port and stopped by PID (`tests.tools.process.served`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
from collections.abc import AsyncGenerator, Generator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.admin.conftest import ADMIN, AUDIT_KEY
from tests.admin.services import postgres_server, redis_server
from tests.tools import PATIENCE, ServedProcess, free_port, served, unavailable

AGENTHUB = [sys.executable, "-c", "import sys; from hub.cli.main import main; sys.exit(main())"]
MASTER_KEY = "master-key-for-scale-out-tests-0123456789abcdef"
REPLICA_HEADER = "x-agenthub-replica"
HAPROXY = "/usr/sbin/haproxy"


@dataclass(frozen=True)
class Services:
    """The shared engines: PostgreSQL and Redis URLs."""

    database: str
    redis: str


@contextlib.contextmanager
def shared_services() -> Generator[Services]:
    """A private PostgreSQL and Redis for the block (stopped by PID)."""
    with postgres_server() as database, redis_server() as redis:
        yield Services(database, redis)


@dataclass
class Served:
    """Which replica answered each MCP response a client saw, in the order the responses started."""

    replicas: list[str] = field(default_factory=list[str])
    requests: list[tuple[str, str]] = field(default_factory=list[tuple[str, str]])
    """`(method, replica)` per response (`GET` is the long-lived stream)."""
    session_id: str | None = None
    """The session id the `initialize` response gave."""

    async def hook(self, response: httpx2.Response) -> None:
        replica = response.headers.get(REPLICA_HEADER, "?")
        if self.session_id is None:
            self.session_id = response.headers.get("mcp-session-id")
        self.replicas.append(replica)
        self.requests.append((response.request.method, replica))


@dataclass
class Cluster:
    """The running replicas and the load balancer in front of them."""

    hubs: list[ServedProcess]
    balancer: ServedProcess
    names: list[str]

    def url(self, path: str = "/mcp") -> str:
        """A URL through the load balancer."""
        return self.balancer.url(path)

    def kill(self, index: int) -> None:
        """SIGKILL replica `index` (its whole process group), as a crash would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.hubs[index].pid, signal.SIGKILL)
        self.hubs[index].process.wait()


def haproxy_config(port: int, backends: list[int]) -> str:
    """Round-robin, no stickiness, the server side closed after each response (per-request balancing)."""
    servers = "\n".join(
        f"    server r{n} 127.0.0.1:{p} check inter 200ms fall 1 rise 1" for n, p in enumerate(backends)
    )
    return f"""
global
    maxconn 512

defaults
    mode http
    option http-server-close
    option redispatch
    retries 2
    timeout connect 5s
    timeout client 600s
    timeout server 600s
    timeout tunnel 600s

frontend mcp
    bind 127.0.0.1:{port}
    default_backend hubs

backend hubs
    balance roundrobin
{servers}
"""


def hub_config(path: Path, body: str, balancer_port: int) -> Path:
    """A config file for every replica: `body` plus the balancer's address as an allowed Host."""
    path.write_text(
        f"""
[hub]
workers = 1
upstream_start_timeout_s = {PATIENCE}
allowed_hosts = ["127.0.0.1:{balancer_port}"]
{body}
""",
        encoding="utf-8",
    )
    return path


@contextlib.asynccontextmanager
async def cluster(
    services: Services, tmp_path: Path, *, replicas: int, config: str, env: dict[str, str] | None = None
) -> AsyncGenerator[Cluster]:
    """`replicas` hub processes with the same config, database and Redis, behind haproxy (stopped by PID).

    `config` is TOML that follows a `[hub]` table (more `[hub]` keys first, then other tables)."""
    if not Path(HAPROXY).exists() and shutil.which("haproxy") is None:
        unavailable("haproxy", "apt-get install haproxy")
    haproxy = HAPROXY if Path(HAPROXY).exists() else str(shutil.which("haproxy"))
    balancer_port = free_port()
    config_path = hub_config(tmp_path / "agenthub.toml", config, balancer_port)
    base_env = {
        "AGENTHUB_DATABASE_URL": services.database,
        "AGENTHUB_REDIS_URL": services.redis,
        "AGENTHUB_ADMIN_TOKEN": ADMIN,
        "AGENTHUB_AUDIT_KEY": AUDIT_KEY,
        "AGENTHUB_MASTER_KEY": MASTER_KEY,
        **(env or {}),
    }
    argv = [*AGENTHUB, "serve", "--config", str(config_path), "--listen", "127.0.0.1:{port}"]
    names = [f"r{n}" for n in range(replicas)]
    async with AsyncExitStack() as stack:
        hubs: list[ServedProcess] = []
        for name in names:
            hub_env = {**base_env, "AGENTHUB_REPLICA_NAME": name}
            hubs.append(await stack.enter_async_context(served(argv, env=hub_env)))
        haproxy_cfg = tmp_path / "haproxy.cfg"
        haproxy_cfg.write_text(haproxy_config(balancer_port, [hub.port for hub in hubs]), encoding="utf-8")
        balancer = await stack.enter_async_context(served([haproxy, "-db", "-f", str(haproxy_cfg)], port=balancer_port))
        yield Cluster(hubs, balancer, names)


@contextlib.asynccontextmanager
async def mcp_session(
    url: str, key: str, *, seen: Served, mode: str = "legacy", **kwargs: Any
) -> AsyncGenerator[Client]:
    """A real `mcp` SDK client over Streamable HTTP through the balancer, recording who answered each response."""
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=PATIENCE, event_hooks={"response": [seen.hook]}) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode, **kwargs) as client,
    ):
        yield client
