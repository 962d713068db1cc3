"""Sealed session ids: what one replica seals, any replica with the same master key opens, and nothing else does."""

from __future__ import annotations

from hub.doors.mcp_seal import PREFIX, SessionFacts, SessionSeal

MASTER = "master-key-for-seal-tests-0123456789abcdef"
CLIENT = {
    "protocolVersion": "2025-11-25",
    "capabilities": {"elicitation": {}},
    "clientInfo": {"name": "c", "version": "1"},
}
FACTS = SessionFacts("key-1", "fixture", "2025-11-25", CLIENT, opened=1000.0, expires=2000.0)


def test_another_replica_with_the_same_master_key_opens_what_one_sealed() -> None:
    sealed = SessionSeal(MASTER).seal(FACTS)
    assert sealed.startswith(PREFIX)
    assert all(0x21 <= ord(c) <= 0x7E for c in sealed)  # visible ASCII, as a session id must be
    assert SessionSeal(MASTER).open(sealed, now=1500.0) == FACTS


def test_the_key_id_and_client_details_are_not_readable_in_the_id() -> None:
    sealed = SessionSeal(MASTER).seal(FACTS)
    assert "key-1" not in sealed and "elicitation" not in sealed
    assert SessionSeal(MASTER).seal(FACTS) != sealed  # a fresh nonce each time


def test_an_id_sealed_with_another_master_key_opens_nothing() -> None:
    assert SessionSeal("another-master-key-0123456789abcdef").open(SessionSeal(MASTER).seal(FACTS), 1500.0) is None


def test_an_altered_id_opens_nothing() -> None:
    sealed = SessionSeal(MASTER).seal(FACTS)
    middle = len(sealed) // 2
    altered = sealed[:middle] + ("A" if sealed[middle] != "A" else "B") + sealed[middle + 1 :]
    assert SessionSeal(MASTER).open(altered, 1500.0) is None
    assert SessionSeal(MASTER).open(sealed[:-2], 1500.0) is None


def test_an_expired_id_opens_nothing() -> None:
    sealed = SessionSeal(MASTER).seal(FACTS)
    assert SessionSeal(MASTER).open(sealed, now=1999.0) == FACTS
    assert SessionSeal(MASTER).open(sealed, now=2000.0) is None


def test_ids_that_are_not_sealed_open_nothing() -> None:
    seal = SessionSeal(MASTER)
    for session_id in [
        "",
        "0123456789abcdef0123456789abcdef",
        PREFIX,
        PREFIX + "!!!",
        PREFIX + "AAAA",
        PREFIX + "A" * 9000,
    ]:
        assert seal.open(session_id, 1500.0) is None
