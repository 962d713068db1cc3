"""`[sign_in]` is validated by `agenthub config check` like every section; and the live-token index honours
expiry and audience (checked against an injected clock)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.cli.main import main as cli
from hub.governance.keys import VirtualKey
from hub.signin.store import token_hash
from hub.signin.tokens import LiveToken, TokenIndex

GOOD = """
[[teams]]
name = "platform"

[sign_in]
issuer = "https://hub.example.com"
idp = { issuer = "https://login.example.com", client_id = "hub", client_secret = "env:SIGNIN_TEST_SECRET" }
allowed_redirects = ["http://127.0.0.1/*", "cursor://*", "https://claude.ai/api/mcp/auth_callback"]
token_ttl = "1h"
refresh_ttl = "30d"

[[sign_in.grants]]
group = "engineering"
tools = ["github__*"]
team = "platform"
budget = { max_usd = 20.0, reset = "1M" }
"""


def check(tmp_path: Path, text: str) -> int:
    path = tmp_path / "agenthub.toml"
    path.write_text(text)
    return cli(["config", "check", str(path)])


def test_a_complete_section_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SIGNIN_TEST_SECRET", "s3cret")
    assert check(tmp_path, GOOD) == 0, capsys.readouterr().err
    assert "OK" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('team = "platform"', 'team = "nobody"'), "names unknown team 'nobody'"),
        (('issuer = "https://hub.example.com"', 'issuer = "https://hub.example.com/x?y"'), "sign_in.issuer"),
        (('token_ttl = "1h"', 'token_ttl = "soon"'), "sign_in.token_ttl"),
        (('"cursor://*"', '"no-scheme"'), "must be an absolute URI pattern"),
        (('group = "engineering"', 'claim = "dept"'), "needs a value"),
        (('client_secret = "env:SIGNIN_TEST_SECRET"', 'client_secret = "env:SIGNIN_TEST_UNSET"'), "SIGNIN_TEST_UNSET"),
    ],
)
def test_mistakes_are_named(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    change: tuple[str, str],
    message: str,
) -> None:
    monkeypatch.setenv("SIGNIN_TEST_SECRET", "s3cret")
    monkeypatch.delenv("SIGNIN_TEST_UNSET", raising=False)
    assert check(tmp_path, GOOD.replace(*change)) == 2
    assert message in capsys.readouterr().err


def test_a_token_stops_working_when_it_expires_and_away_from_its_endpoint() -> None:
    now = [1000.0]
    index = TokenIndex(clock=lambda: now[0])
    person = VirtualKey(id="user_1", name="user:dana@example.com", tools=("fixture__echo",))
    token = "aht-" + "x" * 43
    index.add(token_hash(token), LiveToken(person, "http://hub/mcp", 1060.0, "fam"))
    assert index.check(token, "http://hub/mcp") is person
    assert index.check(token, "http://hub/mcp/fixture") is person  # under the aggregated endpoint
    assert index.check(token, "http://hub/mcpx") is None
    assert index.check("ahk-" + "x" * 43, "http://hub/mcp") is None
    assert index.person("user_1") is person
    now[0] = 1060.0
    assert index.check(token, "http://hub/mcp") is None
    assert index.person("user_1") is None  # no live token left: an open session's next call is refused
