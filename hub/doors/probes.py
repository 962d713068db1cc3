"""`GET /readyz`: the readiness probe a load balancer or Kubernetes asks before sending this process traffic.

`/healthz` says the process is alive (it answers whenever the event loop runs); `/readyz` says whether a call sent
here now can succeed: start-up is complete (the store opened, the pipeline composed, the upstreams connected or
given up on after `[hub] upstream_start_timeout_s`), the store answers a query, and the counters backend (Redis
when `AGENTHUB_REDIS_URL` is set, else the process's own) answers a read. A process that is not ready keeps
running and recovers by itself when what it waits for comes back; the probe only steers traffic away meanwhile.

Like `/healthz`, it is not a governed call: it takes no key (probes carry none), reaches no upstream and spends
nothing. So that anyone who reaches the port may ask it, it says no more than which part is not ready
(`"store": "unreachable"`), never why: the reason (a host name, a driver message) goes to the hub's log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

import anyio
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import Response

from hub.doors.web import json_response

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from hub.governance.counters import Counters

logger = logging.getLogger(__name__)

READYZ_PATH = "/readyz"

PROBE_TIMEOUT_S = 2.0
"""How long one check may take before its part counts as unreachable (a probe's own deadline is usually 1-5 s)."""

PROBE_KEY = "readyz"
"""The counter slot the probe reads: reading creates nothing, so the probe leaves no trace in the counters."""


class _Store(Protocol):
    @property
    def engine(self) -> Engine: ...


class _Limiter(Protocol):
    @property
    def counters(self) -> Counters: ...


class ProbedHub(Protocol):
    """What the probe reads of the running hub: its store and its limits engine (set while running)."""

    @property
    def store(self) -> _Store: ...

    @property
    def limiter(self) -> _Limiter | None: ...


class Readiness:
    """The checks behind `/readyz` for the hub `current()` returns (None before start-up completes or after it stops).

    At most one store query is in flight: a query that hangs (a database host that drops packets) is abandoned at
    the deadline, and probes that arrive while it still runs answer "unreachable" at once instead of piling up
    threads behind it.
    """

    def __init__(self, current: Callable[[], ProbedHub | None], timeout: float = PROBE_TIMEOUT_S) -> None:
        self._current = current
        self._timeout = timeout
        self.store_idle = threading.Event()
        """Set while no store query of the probe runs (a query that hangs clears it until it ends)."""
        self.store_idle.set()

    async def checks(self) -> dict[str, str]:
        """Each part's state: `startup` ("complete" or "pending"), then `store` and `counters` ("ok" or
        "unreachable") once the hub runs."""
        hub = self._current()
        limiter = hub.limiter if hub is not None else None
        if hub is None or limiter is None:
            return {"startup": "pending"}
        store = await self._store_answers(hub.store.engine)
        counters = await self._counters_answer(limiter.counters)
        return {"startup": "complete", "store": _state(store), "counters": _state(counters)}

    async def _store_answers(self, engine: Engine) -> bool:
        if not self.store_idle.is_set():
            return False
        self.store_idle.clear()
        started = threading.Event()
        answered = False
        with anyio.move_on_after(self._timeout):
            answered = await anyio.to_thread.run_sync(self._query, engine, started, abandon_on_cancel=True)
        if not started.is_set():  # the deadline came before a worker thread took the query: it never runs
            self.store_idle.set()
        return answered

    def _query(self, engine: Engine, started: threading.Event) -> bool:
        started.set()
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return True
        except Exception as exc:  # any failure means "not ready"; the reason stays in the log
            logger.warning("readiness: the store did not answer: %s", exc)
            return False
        finally:
            self.store_idle.set()

    async def _counters_answer(self, counters: Counters) -> bool:
        with anyio.move_on_after(self._timeout):
            try:
                await counters.read([PROBE_KEY], now=time.time())
            except Exception as exc:  # any failure means "not ready"; the reason stays in the log
                logger.warning("readiness: the counters did not answer: %s", exc)
                return False
            return True
        return False


def _state(answered: bool) -> str:
    return "ok" if answered else "unreachable"


def readiness_endpoint(readiness: Readiness) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint for `READYZ_PATH`: 200 when every check passes, else 503; the body names each part's state."""

    async def ready(request: Request) -> Response:
        checks = await readiness.checks()
        ok = checks.get("startup") == "complete" and all(v == "ok" for k, v in checks.items() if k != "startup")
        body = {"status": "ready" if ok else "not ready", "checks": checks}
        return json_response(body, 200 if ok else 503, {"cache-control": "no-store"})

    return ready
