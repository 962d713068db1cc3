"""`[hub] workers`, `shutdown_grace_s` and `code_mode_pool`: validated by `agenthub config check`, and the worker count
`--workers` > `AGENTHUB_WORKERS` > the file > `auto` (the cores this process may use)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from connectors.auth.crypto import MASTER_KEY_ENV
from hub.cli.main import build_parser, main
from hub.runtime.worker import WORKERS_ENV, pool_share, shares_sessions, usable_cores, worker_count
from hub.settings import ConfigError, settings_from_dict


def check(tmp_path: Path, hub: str) -> int:
    config = tmp_path / "agenthub.toml"
    config.write_text(f"[hub]\n{hub}\n")
    return main(["config", "check", str(config)])


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("workers = 0", "workers must be"),
        ("workers = 257", "workers must be"),
        ('workers = "many"', "hub.workers"),
        ("workers = true", "hub.workers"),
        ("shutdown_grace_s = -1", "hub.shutdown_grace_s"),
        ("code_mode_pool = 0", "hub.code_mode_pool"),
    ],
)
def test_config_check_refuses_bad_serving_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, problem: str
) -> None:
    assert check(tmp_path, line) == 2
    assert problem in capsys.readouterr().err


def test_config_check_prints_the_worker_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(WORKERS_ENV, raising=False)
    assert check(tmp_path, "workers = 3\nshutdown_grace_s = 5") == 0
    assert "3 workers" in capsys.readouterr().out
    assert check(tmp_path, 'workers = "auto"') == 0
    cores = usable_cores()
    assert f"{cores} worker{'s' if cores > 1 else ''}" in capsys.readouterr().out  # no Redis needed


def test_the_worker_count_takes_the_flag_then_the_environment_then_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from_dict({"hub": {"workers": 3}})
    monkeypatch.delenv(WORKERS_ENV, raising=False)
    assert worker_count(settings, None) == 3
    assert worker_count(settings_from_dict({}), None) == usable_cores()
    monkeypatch.setenv(WORKERS_ENV, "2")
    assert worker_count(settings, None) == 2
    assert worker_count(settings, 5) == 5
    monkeypatch.setenv(WORKERS_ENV, "auto")
    assert worker_count(settings, None) == usable_cores()
    for bad in ("0", "two", "-1", "999"):
        monkeypatch.setenv(WORKERS_ENV, bad)
        with pytest.raises(ConfigError, match=WORKERS_ENV if not bad.isdigit() else "workers must be"):
            worker_count(settings, None)


def test_auto_is_every_core_with_or_without_redis_and_the_master_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The workers of one supervisor share handshake-era MCP sessions through it when there is no Redis, under a
    key it makes when there is no master key: `auto` counts the cores in every case; a number is taken as it is.
    Replicas share sessions only with Redis and the master key (`shares_sessions`)."""
    monkeypatch.delenv(WORKERS_ENV, raising=False)
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    monkeypatch.delenv("AGENTHUB_REDIS_URL", raising=False)
    with_redis = settings_from_dict({"hub": {"redis_url": "redis://127.0.0.1:1/0"}})
    embedded = settings_from_dict({})
    assert worker_count(with_redis, None) == usable_cores()
    assert worker_count(embedded, None) == usable_cores()
    assert not shares_sessions(with_redis) and not shares_sessions(embedded)
    monkeypatch.setenv(MASTER_KEY_ENV, "k" * 44)
    assert worker_count(with_redis, None) == usable_cores()
    assert shares_sessions(with_redis) and not shares_sessions(embedded)
    assert worker_count(settings_from_dict({"hub": {"workers": 2}}), None) == 2


def test_auto_counts_the_cores_this_process_may_use() -> None:
    assert usable_cores() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("value", ["0", "x", "257", "-2"])
def test_serve_refuses_a_bad_workers_flag(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["serve", "--workers", value])
    assert exited.value.code == 2
    assert "--workers" in capsys.readouterr().err


def test_the_sandbox_pool_is_shared_out_with_at_least_one_each() -> None:
    assert [pool_share(2, n) for n in (1, 2, 3, 8)] == [2, 1, 1, 1]
    assert [pool_share(8, n) for n in (1, 2, 3)] == [8, 4, 2]
