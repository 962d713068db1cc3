"""`agenthub logs export` writes a time range (filtered) oldest first, as JSON lines or CSV; `agenthub logs tail`
prints the last rows, then each new row as a flush writes it."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import anyio
import orjson
import pytest

from hub.cli.main import main
from hub.store.sql import SqlStore
from tests.tools.logseed import expected, seed, seeded
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

SINCE, UNTIL = "2026-12-05T00:00:00Z", "2026-12-07T06:00:00Z"


async def _seeded_config(tmp_path: Path) -> tuple[Path, SqlStore]:
    config = tmp_path / "agenthub.toml"
    config.write_text(f'[hub]\ndatabase = "sqlite:///{tmp_path / "hub.db"}"\n')
    store = SqlStore(f"sqlite:///{tmp_path / 'hub.db'}")
    await seed(store, seeded())
    return config, store


async def test_export_writes_the_range_oldest_first_as_json_lines_or_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, store = await _seeded_config(tmp_path)
    store.close()
    entries = seeded()
    out = tmp_path / "out.jsonl"
    args = ["logs", "export", "--config", str(config), "--since", SINCE, "--until", UNTIL]
    assert main([*args, "--format", "jsonl", "--output", str(out)]) == 0
    rows = [orjson.loads(line) for line in out.read_text().splitlines()]
    want = expected(entries, {"since": SINCE.replace("Z", "+00:00"), "until": UNTIL.replace("Z", "+00:00")})
    assert [row["call_id"] for row in rows] == want[::-1] and len(rows) > 100
    assert f"{len(rows)} rows written to {out}" in capsys.readouterr().err
    assert main([*args, "--team", "payments", "--min-latency-ms", "500", "--format", "csv"]) == 0
    listed = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    params = {"since": SINCE.replace("Z", "+00:00"), "until": UNTIL.replace("Z", "+00:00"), "team": "payments",
              "min_latency_ms": "500"}  # fmt: skip
    assert [row["call_id"] for row in listed] == expected(entries, params)[::-1]
    assert listed[0]["team"] == "payments" and float(listed[0]["latency_ms"]) >= 500


async def test_export_refuses_a_time_it_cannot_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, store = await _seeded_config(tmp_path)
    store.close()
    assert main(["logs", "export", "--config", str(config), "--since", "last tuesday"]) == 2
    assert "since must be an RFC 3339 time" in capsys.readouterr().err


async def test_tail_shows_the_last_rows_then_each_new_one(tmp_path: Path) -> None:
    config, store = await _seeded_config(tmp_path)
    entries = seeded()
    command = [sys.executable, "-m", "hub.cli.main", "logs", "tail", "--config", str(config), "--lines", "3",
               "--interval", "0.05", "--json"]  # fmt: skip
    process = await anyio.open_process(command)
    try:
        stdout = process.stdout
        assert stdout is not None
        pending = b""

        async def lines(count: int) -> list[str]:
            nonlocal pending
            out: list[str] = []
            with anyio.fail_after(PATIENCE):
                while len(out) < count:
                    while b"\n" not in pending:
                        pending += await stdout.receive()
                    line, pending = pending.split(b"\n", 1)
                    out.append(orjson.loads(line)["call_id"])
            return out

        assert await lines(3) == [e.call_id for e in entries[-3:]]
        later = seeded(count=5, seed=99)[:5]
        for n, entry in enumerate(later):
            entry.call_id = f"call_new_{n}"
        await seed(store, later)
        assert await lines(5) == [f"call_new_{n}" for n in range(5)]
    finally:
        process.terminate()
        with anyio.fail_after(PATIENCE):
            await process.wait()
        await process.aclose()
        store.close()


def test_every_filter_of_the_log_api_is_an_export_option() -> None:
    from hub.audit.logquery import FILTER_NAMES
    from hub.cli.logs import FILTER_OPTIONS

    assert set(FILTER_OPTIONS) == FILTER_NAMES - {"since", "until"}
