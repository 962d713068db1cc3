"""Audit exports: JSON and JSONL verify on their own; syslog lines follow RFC 5424 with structured data."""

from __future__ import annotations

import json
import re

from hub.audit.chain import AuditChain, AuditEntry, AuditEvent, Keyring, verify
from hub.audit.export import frame_octet_counted, parse_jsonl, severity, to_json, to_jsonl, to_syslog
from hub.governance.clock import ManualClock

KEYRING = Keyring({"k1": b"k" * 32}, active="k1")

# RFC 5424: HEADER SP STRUCTURED-DATA [SP MSG]; HEADER = PRI VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP
# PROCID SP MSGID.
SYSLOG = re.compile(
    r"^<(?P<pri>\d{1,3})>1 (?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (?P<host>[!-~]{1,255}) "
    r"(?P<app>[!-~]{1,48}) (?P<procid>[!-~]{1,128}) (?P<msgid>[!-~]{1,32}) "
    r'(?P<sd>\[audit@32473(?: [^= \]"]{1,32}="(?:[^"\\\]]|\\["\\\]])*")+\]) \ufeff(?P<msg>.*)$',
    re.DOTALL,
)


def _entries() -> list[AuditEntry]:
    chain = AuditChain(KEYRING, clock=ManualClock())
    return [
        chain.append(AuditEvent("alice", "key.create", "key", "k1", after={"name": "ci"}, source_ip="10.0.0.1")),
        chain.append(
            AuditEvent(
                'bob "the admin"',
                "budget.update with a very long action name",
                "team",
                "plat]form",
                before={"max": 1},
                after={"max": 2},
                outcome="denied",
            )
        ),
    ]


def test_json_and_jsonl_exports_verify_on_their_own():
    entries = _entries()
    assert verify([AuditEntry.from_dict(d) for d in json.loads(to_json(entries))], KEYRING)
    lines = to_jsonl(entries)
    assert lines.count("\n") == 2
    assert parse_jsonl(lines + "\n") == entries
    assert verify(parse_jsonl(lines), KEYRING)


def test_syslog_lines_follow_rfc_5424():
    first, second = _entries()
    line = to_syslog(first, hostname="hub-1", procid="42")
    match = SYSLOG.match(line)
    assert match is not None, line
    assert int(match["pri"]) == 13 * 8 + 6
    assert (match["host"], match["app"], match["procid"], match["msgid"]) == ("hub-1", "agenthub", "42", "key.create")
    assert 'seq="1" actor="alice" action="key.create" resource_type="key" resource_id="k1"' in match["sd"]
    assert 'source_ip="10.0.0.1"' in match["sd"]
    assert AuditEntry.from_dict(json.loads(match["msg"])) == first

    denied = SYSLOG.match(to_syslog(second, hostname="host with space"))
    assert denied is not None
    assert int(denied["pri"]) == 13 * 8 + 4
    assert denied["host"] == "host_with_space"
    assert denied["procid"] == "-"
    assert denied["msgid"] == "budget.update_with_a_very_long_ac"[:32]
    assert r'actor="bob \"the admin\""' in denied["sd"]
    assert r'resource_id="plat\]form"' in denied["sd"]


def test_outcomes_map_to_severities_and_tcp_frames_count_octets():
    assert (severity("success"), severity("denied"), severity("failure")) == (6, 4, 5)
    assert frame_octet_counted("<1>1 é") == b"7 <1>1 \xc3\xa9"
