"""The Codex CLI with its provider at the hub's `/v1`, the hub in front of the recording Responses fake.

Codex sends `store: false` and resends the whole conversation: the hub routes each turn like any other request
(the alias to its deployment, the provider's own key upstream), keeps no response state for it, and relays the
stream Codex reads its answer from.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from llm.testing.server import serve
from tests.agents.harness import agent_clis, codex_config, codex_env, run_cli
from tests.agents.recorder import proxy_trap
from tests.agents.responses_fake import OutputText, ResponsesFake
from tests.hub.harness import ALICE, running_hub

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

MODEL = "gpt-5.5"
"""The alias Codex asks for (a model Codex knows), served by the deployment `upstream/upstream-model`."""
UPSTREAM_KEY = "sk-upstream-provider-key"


async def test_codex_exec_through_the_hub_works_without_stored_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools = agent_clis()
    monkeypatch.setenv("T_CODEX_UPSTREAM", UPSTREAM_KEY)
    recorder = ResponsesFake([(OutputText("Hello through the hub."),)]).recorder()
    workdir = tmp_path / "work"
    workdir.mkdir()
    argv = tools.codex("exec", "--skip-git-repo-check", "--ephemeral", "--color", "never", "Say hello.")
    async with serve(recorder) as upstream, proxy_trap() as trap:
        config = {
            "hub": {"upstream_start_timeout_s": 5},
            "servers": {},
            "keys": [{"name": "alice", "secret": ALICE, "models": ["*"]}],
            "providers": {
                "upstream": {
                    "kind": "openai",
                    "base_url": f"{upstream}/v1",
                    "keys": [{"name": "main", "secret": "env:T_CODEX_UPSTREAM"}],
                }
            },
            "models": {MODEL: {"deployments": [{"provider": "upstream", "model": "upstream-model"}]}},
        }
        async with running_hub(config, tmp_path) as hub:
            codex_home = tmp_path / "codex-home"
            codex_config(codex_home, hub.url("/v1"), model=MODEL)
            env = codex_env(codex_home, tmp_path / "home", tools, proxy=trap.url, api_key=ALICE)
            run = await run_cli(argv, env=env, cwd=workdir)
            log = hub.hub.request_log
            assert log is not None
            await log.flush()
            rows = [(r.key_name, r.operation, r.status, r.deployment) for r in hub.hub.store.recent_log(10)]
            with hub.hub.store.engine.connect() as conn:
                stored = conn.execute(text("SELECT count(*) FROM responses")).scalar()

    assert run.ok().stdout.strip() == "Hello through the hub."
    assert trap.attempts == []
    (turn,) = recorder.to("/v1/responses")
    assert turn.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    body = turn.body
    assert body["model"] == "upstream-model" and body["stream"] is True
    assert body["store"] is False and "previous_response_id" not in body
    assert rows == [("alice", "llm.chat", 200, "upstream/upstream-model")]
    assert stored == 0
