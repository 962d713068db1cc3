"""`agenthub audit verify/export/purge`, tamper detection on the stored chain, retention and the audit key."""

from __future__ import annotations

import json
import logging
import sqlite3
import stat
from pathlib import Path

import pytest

from hub.audit.adminlog import AuditKeyError, AuditLog, AuditSection, audit_keyring
from hub.audit.chain import AuditEvent
from hub.audit.export import parse_jsonl
from hub.cli.admin import AdminContext
from hub.cli.main import main as cli
from hub.settings import load_settings


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "agenthub.toml"
    path.write_text('[hub]\ndatabase = "sqlite:///hub.db"\n', encoding="utf-8")
    return path


def _chain(tmp_path: Path, n: int = 5) -> Path:
    """A config whose database holds `n` audit entries (made through the CLI's own audit path)."""
    config = _config(tmp_path)
    ctx = AdminContext(load_settings(config))
    try:
        for i in range(n):
            ctx.record("customer.create", "customer", f"c{i}", None, {"name": f"c{i}"})
    finally:
        ctx.close()
    return config


def _sql(tmp_path: Path, statement: str) -> None:
    with sqlite3.connect(tmp_path / "hub.db") as db:
        db.execute(statement)


def _verify(config: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = cli(["audit", "verify", "--config", str(config), *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_verify_passes_an_intact_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _verify(_chain(tmp_path), capsys)
    assert code == 0 and "5 entries verified" in text


@pytest.mark.parametrize(
    ("tamper", "bad_seq"),
    [
        ("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3", 3),
        ('UPDATE audit_log SET after = \'{"name": "other"}\' WHERE seq = 2', 2),
        ("DELETE FROM audit_log WHERE seq = 3", 3),
        ("DELETE FROM audit_log WHERE seq = 5", 5),
        ("DELETE FROM audit_log WHERE seq = 1", 1),
        (
            "INSERT INTO audit_log SELECT 6, time, actor, action, resource_type, resource_id, before, after, "
            "source_ip, user_agent, outcome, key_id, mac, mac FROM audit_log WHERE seq = 5",
            6,
        ),
        ("UPDATE audit_log SET seq = seq + 10 WHERE seq = 2", 2),
    ],
    ids=["modified-actor", "modified-after", "deleted-middle", "deleted-last", "deleted-first", "inserted", "moved"],
)
def test_verify_names_the_first_bad_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tamper: str, bad_seq: int
) -> None:
    config = _chain(tmp_path)
    _sql(tmp_path, tamper)
    code, text = _verify(config, capsys)
    assert code == 1
    assert f"first bad entry seq {bad_seq}:" in text


def test_an_export_verifies_on_its_own_and_a_reordered_export_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _chain(tmp_path, 4)
    out = tmp_path / "audit.jsonl"
    assert cli(["audit", "export", "--config", str(config), "--format", "jsonl", "--output", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert [e.seq for e in parse_jsonl(out.read_text())] == [1, 2, 3, 4]
    assert _verify(config, capsys, "--input", str(out))[0] == 0
    lines[1], lines[2] = lines[2], lines[1]
    out.write_text("\n".join(lines) + "\n")
    code, text = _verify(config, capsys, "--input", str(out))
    assert code == 1 and "first bad entry seq 2:" in text
    # the export itself was audited (seq 5), and the stored chain is still intact
    code, text = _verify(config, capsys)
    assert code == 0 and "5 entries" in text


def test_export_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _chain(tmp_path, 2)
    as_json = tmp_path / "audit.json"
    assert cli(["audit", "export", "--config", str(config), "--format", "json", "--output", str(as_json)]) == 0
    assert [e["seq"] for e in json.loads(as_json.read_text())] == [1, 2]
    capsys.readouterr()
    assert cli(["audit", "export", "--config", str(config), "--format", "syslog"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3  # two entries and the JSON export's own record
    assert all(line.startswith("<110>1 ") and "[audit@32473 seq=" in line for line in lines)


def test_retention_purges_old_entries_behind_a_signed_checkpoint(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    config = _config(tmp_path)
    ctx = AdminContext(load_settings(config))
    log = AuditLog(ctx.store, ctx.audit.keyring, clock=lambda: now[0])
    for i in range(3):
        log.append_sync(AuditEvent("alice", "team.create", "team", f"old{i}"))
    now[0] += 10 * 86400
    for i in range(2):
        log.append_sync(AuditEvent("alice", "team.create", "team", f"new{i}"))
    checkpoint = log.purge_sync(5)
    assert checkpoint is not None and checkpoint.seq == 3
    assert [e.seq for e in log.entries()] == [4, 5]
    assert log.verify().ok
    assert log.purge_sync(5) is None
    log.append_sync(AuditEvent("alice", "team.create", "team", "newest"))
    assert log.verify().ok and log.verify().checked == 3
    ctx.close()
    _sql(tmp_path, "UPDATE audit_checkpoints SET seq = 2")
    result = log.verify()
    assert not result.ok and result.reason == "checkpoint signature is invalid"


def test_purge_through_the_cli_is_itself_audited(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _chain(tmp_path, 3)
    assert cli(["audit", "purge", "--config", str(config), "--days", "0"]) == 0
    assert "purged through seq 3" in capsys.readouterr().out
    code, text = _verify(config, capsys)
    assert code == 0 and "1 entries verified" in text


def test_a_different_key_cannot_verify_the_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _chain(tmp_path, 2)
    monkeypatch.setenv("AGENTHUB_AUDIT_KEY", "another-audit-key-of-at-least-32-bytes!!")
    code, text = _verify(config, capsys)
    assert code == 1 and "first bad entry seq 1: unknown key id" in text


def test_the_audit_key_comes_from_the_env_the_master_key_or_a_generated_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    section = AuditSection()
    monkeypatch.setenv("AGENTHUB_AUDIT_KEY", "short")
    with pytest.raises(AuditKeyError, match="at least 32 bytes"):
        audit_keyring(section, tmp_path)
    monkeypatch.delenv("AGENTHUB_AUDIT_KEY")
    monkeypatch.setenv("AGENTHUB_MASTER_KEY", "master-key-material")
    derived = audit_keyring(section, tmp_path)
    assert derived.active == audit_keyring(section, tmp_path).active
    assert not (tmp_path / "audit.key").exists()
    monkeypatch.delenv("AGENTHUB_MASTER_KEY")
    with caplog.at_level(logging.WARNING, logger="hub.audit.adminlog"):
        generated = audit_keyring(section, tmp_path)
    assert "generated an audit HMAC key" in caplog.text
    key_file = tmp_path / "audit.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert audit_keyring(section, tmp_path).active == generated.active != derived.active
