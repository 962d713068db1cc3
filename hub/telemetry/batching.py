"""A batch export thread: items are queued by the hot path, encoded and sent from one thread in batches.

Queueing is a `deque.append` and a length check (thread-safe without a lock). While nothing is queued the thread
sleeps without a timeout (an idle hub's exporters cost nothing); the first item queued wakes it, and it exports
`delay_s` later (`OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BLRP_SCHEDULE_DELAY` for logs) or as soon as a batch is full,
whichever comes first. A queue at `max_queue` drops new items and counts them (telemetry never holds a call up or
grows without bound).
`force_flush` exports everything queued before it was called; `shutdown` exports the rest and stops the thread.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["BatchSettings", "Batcher"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BatchSettings:
    """When the thread exports: every `delay_s`, or once `max_batch` items are queued (at most that many a batch)."""

    delay_s: float = 5.0
    max_queue: int = 2048
    max_batch: int = 512

    @classmethod
    def from_env(cls, prefix: str, environ: Mapping[str, str] | None = None) -> BatchSettings:
        """The `{prefix}_SCHEDULE_DELAY` (ms), `{prefix}_MAX_QUEUE_SIZE` and `{prefix}_MAX_EXPORT_BATCH_SIZE`
        variables (`OTEL_BSP` for spans, `OTEL_BLRP` for log records), the specification's defaults otherwise.

        Raises:
            ValueError: a variable is not a positive number (named in the message).
        """
        env = os.environ if environ is None else environ
        delay = _positive(env, f"{prefix}_SCHEDULE_DELAY", 5000)
        queue = int(_positive(env, f"{prefix}_MAX_QUEUE_SIZE", 2048))
        batch = min(int(_positive(env, f"{prefix}_MAX_EXPORT_BATCH_SIZE", 512)), queue)
        return cls(delay / 1000, queue, batch)


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise ValueError(f"{name}={raw!r} must be positive")
    return value


class Batcher(Generic[T]):
    """Queues items and hands them, in batches, to `export` in a daemon thread of its own."""

    def __init__(self, export: Callable[[list[T]], None], settings: BatchSettings, name: str) -> None:
        """`export` runs in the thread; an exception it raises is logged and the batch dropped."""
        self._export = export
        self._delay = settings.delay_s
        self._max_queue = settings.max_queue
        self._max_batch = settings.max_batch
        self.queue: deque[T] = deque()
        self.dropped = 0
        """Items refused because the queue was full."""
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._flushes: list[threading.Event] = []
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def add(self, item: T) -> None:
        """Queue `item` (on the hot path: an append, and a wake-up for the first item of a batch and a full one)."""
        queue = self.queue
        n = len(queue)
        if n >= self._max_queue:
            self.dropped += 1
            return
        queue.append(item)
        if n == 0 or n + 1 == self._max_batch:
            self._wake.set()

    def force_flush(self, timeout_s: float = 30.0) -> bool:
        """Export everything queued so far; False if that took longer than `timeout_s` or the thread stopped."""
        if not self._thread.is_alive():
            return not self.queue
        done = threading.Event()
        with self._lock:
            self._flushes.append(done)
        self._wake.set()
        return done.wait(timeout_s)

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Export what is left and stop the thread (idempotent)."""
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        wake = self._wake
        while True:
            if not self.queue and not self._flushes and not self._stopping:
                wake.wait()  # nothing to export: sleep until the first item, a flush or the end
            wake.clear()
            if not (self._flushes or self._stopping or len(self.queue) >= self._max_batch):
                wake.wait(self._delay)  # the batch fills for `delay_s` at most
                wake.clear()
            with self._lock:
                flushes, self._flushes = self._flushes, []
            self._drain()
            for done in flushes:
                done.set()
            if self._stopping:
                self._drain()
                with self._lock:
                    for done in self._flushes:
                        done.set()
                return

    def _drain(self) -> None:
        queue = self.queue
        while queue:
            popleft = queue.popleft
            batch = [popleft() for _ in range(min(len(queue), self._max_batch))]
            try:
                self._export(batch)
            except Exception:
                logger.exception("telemetry export failed; %d items dropped", len(batch))
