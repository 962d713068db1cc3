"""The config file: validation errors name the file, the key path and the problem; secrets are references."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.cli.main import main as cli
from hub.settings import ConfigError, load_settings

GOOD = """
[hub]
listen = "127.0.0.1:9999"

[servers.time]
transport = "stdio"
command = "mcp-server-time"

[servers.tickets]
transport = "http"
url = "http://127.0.0.1:9001/mcp"
headers = { Authorization = "env:TICKETS_TOKEN" }
timeout_s = 60

[[keys]]
name = "alice"
secret = "file:alice.key"
tools = ["time__*", "tickets__search"]
"""


def test_a_valid_file_loads_with_secrets_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKETS_TOKEN", "Bearer t0k")
    (tmp_path / "alice.key").write_text("ahk-from-file\n")
    path = tmp_path / "agenthub.toml"
    path.write_text(GOOD)
    settings = load_settings(path)
    tickets = settings.servers["tickets"]
    assert settings.hub.listen == "127.0.0.1:9999"
    assert tickets.transport == "http" and tickets.headers == {"Authorization": "Bearer t0k"}
    assert tickets.name == "tickets" and tickets.timeout_s == 60
    assert settings.keys[0].secret == "ahk-from-file"
    assert settings.database_url() == f"sqlite:///{tmp_path / 'agenthub.db'}"


def test_the_listen_flag_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKETS_TOKEN", "x")
    (tmp_path / "alice.key").write_text("ahk-x")
    path = tmp_path / "agenthub.toml"
    path.write_text(GOOD)
    assert load_settings(path, listen="127.0.0.1:1234").hub.listen == "127.0.0.1:1234"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[servers.t]\ntransport = 'stdio'\n", "servers.t.command: Field required"),
        ("[servers.t]\ntransport = 'carrier-pigeon'\n", "servers.t: Input tag 'carrier-pigeon'"),
        ("[servers.t]\ntransport = 'http'\nurl = 'ftp://x'\n", "servers.t.url: String should match pattern"),
        ("[servers.t]\ntransport = 'http'\nurl = 'http://x'\ntimeout_s = -1\n", "servers.t.timeout_s:"),
        ("[hub]\nlisten = 'nowhere'\n", "hub.listen: Value error, listen must be HOST:PORT"),
        ("[hub]\nlisten = '127.0.0.1:80'\nbogus = 1\n", "hub.bogus: Extra inputs are not permitted"),
        ("[[keys]]\nname = 'a'\n[[keys]]\nname = 'a'\n", "keys: Value error, two keys are named 'a'"),
        ("[servers.'bad name']\ntransport = 'stdio'\ncommand = 'x'\n", "servers.bad name.name:"),
        ("[servers.a__b]\ntransport = 'stdio'\ncommand = 'x'\n", "may not contain '__'"),
        ("[[keys]]\nname = 'a'\nsecret = 'env:AGENTHUB_TEST_UNSET_VAR'\n", "keys.a.secret: environment variable"),
        ("not toml ===", "not valid TOML"),
    ],
)
def test_errors_name_the_file_the_key_path_and_the_problem(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_settings(path)
    message = str(error.value)
    assert str(path) in message
    assert expected in message


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_settings(tmp_path / "nope.toml")


def test_config_check_reports_ok_or_the_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.toml"
    good.write_text("[servers.t]\ntransport = 'stdio'\ncommand = 'true'\n")
    bad = tmp_path / "bad.toml"
    bad.write_text("[servers.t]\ntransport = 'stdio'\n")
    assert cli(["config", "check", str(good)]) == 0
    assert "OK (1 servers, 0 keys" in capsys.readouterr().out
    assert cli(["config", "check", str(bad)]) == 2
    assert "servers.t.command: Field required" in capsys.readouterr().err
