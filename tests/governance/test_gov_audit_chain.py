"""Audit chain: sealing, scrubbing, tamper detection with the first bad seq, rotation, retention checkpoints."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from hub.audit.chain import (
    GENESIS_MAC,
    AuditChain,
    AuditEntry,
    AuditEvent,
    Keyring,
    canonical_json,
    format_time,
    purge,
    verify,
)
from hub.audit.scrub import REDACTED, Scrubber, scrub
from hub.governance.clock import ManualClock

SECRET_A = b"a" * 32
SECRET_B = "b-secret-that-is-long-enough-1234"
DAY = 86400.0


def _keyring(active: str = "k1") -> Keyring:
    return Keyring({"k1": SECRET_A, "k2": SECRET_B}, active=active)


def _event(n: int, **changes: object) -> AuditEvent:
    return dataclasses.replace(
        AuditEvent(actor=f"admin-{n}", action="key.update", resource_type="key", resource_id=f"k{n}"), **changes
    )


def _chain(count: int, clock: ManualClock | None = None) -> list[AuditEntry]:
    clock = clock or ManualClock()
    chain = AuditChain(_keyring(), clock=clock)
    entries: list[AuditEntry] = []
    for n in range(count):
        entries.append(chain.append(_event(n)))
        clock.advance(DAY)
    return entries


def test_entries_link_to_their_predecessor_and_verify():
    entries = _chain(5)
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_mac == GENESIS_MAC
    assert all(b.prev_mac == a.mac for a, b in zip(entries, entries[1:], strict=False))
    assert entries[0].time == "2026-01-01T00:00:00.000000Z"
    result = verify(entries, _keyring())
    assert result and result.checked == 5 and result.first_bad_seq is None
    assert verify(entries, _keyring(), expected_head=(5, entries[-1].mac))


def test_before_and_after_are_scrubbed_before_sealing():
    chain = AuditChain(_keyring(), clock=ManualClock())
    entry = chain.append(
        _event(
            1,
            before={"name": "ci", "api_key": "ahk-abcdefghijklmnop", "headers": {"Authorization": "Bearer x"}},
            after={"name": "ci2", "note": "rotated to ahk-abcdefghijklmnopq", "max_tokens": 10, "tokens": 5},
            user_agent="curl/8 Bearer abcdefghijkl",
        )
    )
    assert entry.before == {"name": "ci", "api_key": REDACTED, "headers": {"Authorization": REDACTED}}
    assert entry.after == {"name": "ci2", "note": f"rotated to {REDACTED}", "max_tokens": 10, "tokens": 5}
    assert entry.user_agent == f"curl/8 {REDACTED}"
    assert verify([entry], _keyring())


@pytest.mark.parametrize(
    ("tamper", "bad_seq", "reason"),
    [
        (lambda es: es[:2] + [dataclasses.replace(es[2], actor="mallory")] + es[3:], 3, "modified"),
        (lambda es: es[:2] + [dataclasses.replace(es[2], after={"x": 1})] + es[3:], 3, "modified"),
        (lambda es: es[:2] + es[3:], 3, "missing"),
        (lambda es: es[:1] + [es[2], es[1]] + es[3:], 2, "missing"),
        (lambda es: es[:3] + [es[1]] + es[3:], 2, "out of order or repeated"),
        (lambda es: es[:2] + [dataclasses.replace(es[2], mac="0" * 64)] + es[3:], 3, "MAC mismatch"),
        (lambda es: es[:2] + [dataclasses.replace(es[2], key_id="k9")] + es[3:], 3, "unknown key id"),
        (lambda es: [dataclasses.replace(es[0], seq=0)] + es[1:], 0, "modified"),
    ],
    ids=["actor-edited", "after-edited", "deleted", "swapped", "duplicated", "mac-replaced", "unknown-key", "renum"],
)
def test_tampering_is_detected_at_the_first_bad_seq(
    tamper: Callable[[list[AuditEntry]], list[AuditEntry]], bad_seq: int, reason: str
):
    tampered = tamper(_chain(6))
    result = verify(tampered, _keyring())
    assert not result
    assert result.first_bad_seq == bad_seq
    assert reason in (result.reason or "")


def test_an_inserted_entry_signed_with_a_real_key_still_breaks_the_chain():
    entries = _chain(4)
    forger = AuditChain(_keyring(), head=entries[1], clock=ManualClock())  # a valid key but a fork at seq 2
    forged = forger.append(_event(99))
    renumbered = [dataclasses.replace(e) for e in entries[2:]]
    result = verify([*entries[:2], forged, *renumbered], _keyring())
    assert (result.first_bad_seq, result.ok) == (3, False)
    assert "out of order" in (result.reason or "")


def test_tail_truncation_is_caught_with_the_recorded_head():
    entries = _chain(5)
    result = verify(entries[:3], _keyring(), expected_head=(5, entries[-1].mac))
    assert (result.ok, result.first_bad_seq) == (False, 4)
    assert "truncated" in (result.reason or "")
    other = verify(entries, _keyring(), expected_head=(5, "f" * 64))
    assert (other.ok, other.first_bad_seq) == (False, 5)


def test_rotation_keeps_old_entries_verifiable():
    clock = ManualClock()
    first = AuditChain(_keyring("k1"), clock=clock)
    old = [first.append(_event(n)) for n in range(2)]
    second = AuditChain(_keyring("k2"), head=old[-1], clock=clock)
    new = [second.append(_event(n)) for n in range(2)]
    assert [e.key_id for e in old + new] == ["k1", "k1", "k2", "k2"]
    assert verify(old + new, _keyring())
    only_k2 = Keyring({"k2": SECRET_B}, active="k2")
    assert verify(old + new, only_k2).first_bad_seq == 1


def test_retention_purges_a_prefix_and_the_checkpoint_anchors_the_rest():
    clock = ManualClock()
    entries = _chain(10, clock)  # one entry per day; clock now 10 days after the first
    kept, checkpoint = purge(entries, older_than_days=3.5, keyring=_keyring(), clock=clock)
    assert checkpoint is not None
    assert [e.seq for e in kept] == [8, 9, 10]
    assert (checkpoint.seq, checkpoint.mac) == (7, entries[6].mac)
    assert verify(kept, _keyring(), checkpoint=checkpoint)
    assert not verify(kept[1:], _keyring(), checkpoint=checkpoint)  # dropping one more is still seen
    forged = dataclasses.replace(checkpoint, seq=8)
    result = verify(kept[1:], _keyring(), checkpoint=forged)
    assert (result.ok, result.reason) == (False, "checkpoint signature is invalid")
    assert type(checkpoint).from_dict(checkpoint.to_dict()) == checkpoint
    assert purge(kept, older_than_days=30, keyring=_keyring(), clock=clock) == (kept, None)


def test_entries_round_trip_through_dicts_and_refuse_unknown_fields():
    [entry] = _chain(1)
    assert AuditEntry.from_dict(entry.to_dict()) == entry
    with pytest.raises(ValueError, match="fields differ"):
        AuditEntry.from_dict({**entry.to_dict(), "extra": 1})


def test_keyrings_refuse_short_secrets_and_unknown_active_ids():
    with pytest.raises(ValueError, match="at least 32 bytes"):
        Keyring({"k": b"short"}, active="k")
    with pytest.raises(ValueError, match="not in the keyring"):
        Keyring({"k": SECRET_A}, active="other")


def test_canonical_json_and_times_are_stable():
    assert canonical_json({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'.encode()
    assert format_time(0.5) == "1970-01-01T00:00:00.500000Z"
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_the_scrubber_matches_sensitive_keys_and_spares_ordinary_ones():
    scrubber = Scrubber(["tenant_ref"], safe_keys=["session_count"])
    data: dict[str, Any] = {
        "password": "p",
        "DB_PASSWD": "p",
        "client_secret": "s",
        "X-Api-Key": "k",
        "refresh_token": "t",
        "Cookie": "c",
        "session_count": 3,
        "author": "ada",
        "authorization": "Basic x",
        "tenant_ref": "t-1",
        "private_key": None,
        "items": [{"jwt": "e.y.j"}, "sk-abcdefghijklmnopqrstu"],
        "pair": ("ok", "ok"),
    }
    assert scrubber.scrub(data) == {
        "password": REDACTED,
        "DB_PASSWD": REDACTED,
        "client_secret": REDACTED,
        "X-Api-Key": REDACTED,
        "refresh_token": REDACTED,
        "Cookie": REDACTED,
        "session_count": 3,
        "author": "ada",
        "authorization": REDACTED,
        "tenant_ref": REDACTED,
        "private_key": None,
        "items": [{"jwt": REDACTED}, REDACTED],
        "pair": ["ok", "ok"],
    }
    assert scrub({"ssn": "1", "lesson": "x"}) == {"ssn": REDACTED, "lesson": "x"}
