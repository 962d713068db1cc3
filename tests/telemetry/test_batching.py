"""The export thread's queue: a full batch wakes it, `force_flush` exports everything queued before it, a full
queue drops and counts, a failing export loses only its batch, and `shutdown` exports the rest."""

from __future__ import annotations

import threading
from types import FrameType

from hub.telemetry.batching import Batcher, BatchSettings

NEVER = 3600.0
"""A schedule delay no test reaches: the thread runs only when woken."""


def test_batches_are_at_most_max_batch_and_a_flush_exports_all_queued() -> None:
    batches: list[list[int]] = []
    batcher = Batcher(batches.append, BatchSettings(NEVER, 100, 4), "t")
    for i in range(10):
        batcher.add(i)
    assert batcher.force_flush()
    assert [b for batch in batches for b in batch] == list(range(10))
    assert all(len(b) <= 4 for b in batches)
    batcher.shutdown()


def test_a_full_batch_wakes_the_thread_without_a_flush() -> None:
    exported = threading.Event()
    batcher = Batcher(lambda batch: exported.set(), BatchSettings(NEVER, 100, 3), "t")
    for i in range(3):
        batcher.add(i)
    assert exported.wait(60)
    batcher.shutdown()


def test_a_full_queue_drops_and_counts_and_a_failed_batch_is_dropped_alone() -> None:
    gate = threading.Event()
    seen: list[list[int]] = []

    def export(batch: list[int]) -> None:
        gate.wait(60)
        seen.append(batch)
        if batch[0] == 0:
            raise RuntimeError("collector down")

    batcher = Batcher(export, BatchSettings(NEVER, 4, 5), "t")  # no batch fills up: nothing runs until the flush
    for i in range(6):
        batcher.add(i)
    assert batcher.dropped == 2
    gate.set()
    assert batcher.force_flush()
    assert seen == [[0, 1, 2, 3]]
    batcher.add(9)
    batcher.shutdown()
    assert seen == [[0, 1, 2, 3], [9]], "the failed batch is gone, the next is exported (at shutdown)"
    assert not batcher.queue


def test_an_idle_thread_sleeps_until_an_item_is_queued() -> None:
    """With nothing queued the thread waits without a timeout: it does not wake every `delay_s` to find nothing.
    Each time it starts waiting is counted (a profile function in the thread, which calls `Event.wait` for every
    sleep); over the time an idle poller would wake many times, this one starts one wait."""
    waits: list[float | None] = []
    watched: list[threading.Thread] = []

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event == "call" and frame.f_code is threading.Event.wait.__code__ and threading.current_thread() in watched:
            waits.append(frame.f_locals.get("timeout"))

    exported = threading.Event()
    threading.setprofile(profile)
    try:
        batcher = Batcher(lambda batch: exported.set(), BatchSettings(0.001, 100, 50), "t")
        watched.append(batcher._thread)
    finally:
        threading.setprofile(None)
    before = len(waits)
    threading.Event().wait(0.3)  # not a synchronisation: the time in which a poller would show itself
    assert waits[before:] in ([], [None]), "asleep with no timeout, not polling"
    assert waits[:1] in ([], [None])
    batcher.add(1)  # the first item wakes it, and the batch goes `delay_s` later
    assert exported.wait(60)
    batcher.shutdown()
