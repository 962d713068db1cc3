"""The export thread's queue: a full batch wakes it, `force_flush` exports everything queued before it, a full
queue drops and counts, a failing export loses only its batch, and `shutdown` exports the rest."""

from __future__ import annotations

import threading

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
