"""The `Dockerfile`: hadolint finds nothing in it (every rule, at every severity, inline ignores refused), it is
multi-stage with the guest built in the image, runs as a numeric non-root user, and its `HEALTHCHECK` command,
run here against a real hub, passes while the hub serves and fails when nothing answers.

Docker itself is not run (it is not installed where the tests run); docs/deployment.md has the build command.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hub.settings import load_settings
from tests.deploy.tools import hadolint
from tests.tools import REPO_ROOT, free_port, served_sync
from tests.tools.patience import PATIENCE

DOCKERFILE = REPO_ROOT / "Dockerfile"
AGENTHUB = str(Path(sys.executable).with_name("agenthub"))


def lint(path: Path) -> tuple[int, list[dict[str, object]]]:
    run = subprocess.run(
        [hadolint(), "--no-color", "--format", "json", "--failure-threshold", "style", "--disable-ignore-pragma",
         str(path)],
        capture_output=True, text=True, timeout=PATIENCE, check=False,
    )  # fmt: skip
    return run.returncode, json.loads(run.stdout or "[]")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#")))
    out: list[tuple[str, str]] = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    code, findings = lint(DOCKERFILE)
    assert findings == []
    assert code == 0


def test_hadolint_reports_what_it_should(tmp_path: Path) -> None:
    """The lint above can fail: a Dockerfile with well-known faults gets their rule codes."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nUSER root\n", encoding="utf-8")
    code, findings = lint(bad)
    assert code != 0
    assert {"DL3007", "DL3013", "DL3042", "DL3002"} <= {f["code"] for f in findings}


def test_the_image_builds_the_wheel_apart_and_runs_unprivileged() -> None:
    steps = instructions(DOCKERFILE.read_text(encoding="utf-8"))
    stages = [i for i, (word, _) in enumerate(steps) if word == "FROM"]
    assert len(stages) == 2
    build, runtime = steps[stages[0] : stages[1]], steps[stages[1] :]
    assert any(word == "RUN" and "pip wheel" in args for word, args in build)  # runs setup.py: the guest component
    assert any(word == "COPY" and args.startswith("--from=build /dist/") for word, args in runtime)
    runs = " ".join(args for word, args in runtime if word == "RUN")
    assert "[dev]" not in runs and "componentize" not in runs
    users = [args for word, args in runtime if word == "USER"]
    assert users and re.fullmatch(r"[1-9][0-9]*:[1-9][0-9]*", users[-1])
    after_user = runtime[max(i for i, (word, _) in enumerate(runtime) if word == "USER") :]
    assert ("RUN", "agenthub sandbox build") in after_user  # the guest compiled into the user's cache
    assert ("EXPOSE", "8787") in runtime
    assert ("ENTRYPOINT", '["agenthub"]') in runtime
    assert json.loads(next(args for word, args in runtime if word == "CMD")) == ["serve", "--listen", "0.0.0.0:8787"]


def healthcheck_command() -> list[str]:
    steps = instructions(DOCKERFILE.read_text(encoding="utf-8"))
    args = next(args for word, args in steps if word == "HEALTHCHECK")
    command = json.loads(args[args.index("CMD ") + 4 :])
    assert command[0] == "python"
    return [sys.executable, *command[1:]]


def test_the_default_config_of_the_image_is_valid_and_listens_on_every_interface() -> None:
    settings = load_settings(REPO_ROOT / "deploy" / "docker" / "agenthub.toml")
    assert settings.hub.listen == "0.0.0.0:8787"
    assert settings.database_url() == "sqlite:////var/lib/agenthub/agenthub.db"
    env = " ".join(args for word, args in instructions(DOCKERFILE.read_text(encoding="utf-8")) if word == "ENV").split()
    assert "AGENTHUB_HEALTHCHECK_URL=http://127.0.0.1:8787/healthz" in env  # the port the config listens on
    assert "AGENTHUB_CONFIG=/etc/agenthub/agenthub.toml" in env


@pytest.mark.slow
def test_the_healthcheck_passes_on_a_serving_hub_and_fails_without_one(tmp_path: Path) -> None:
    config = tmp_path / "agenthub.toml"
    config.write_text(f'[hub]\ndatabase = "sqlite:///{tmp_path / "hub.db"}"\n', encoding="utf-8")
    command = healthcheck_command()
    argv = [AGENTHUB, "serve", "--config", str(config), "--listen", "127.0.0.1:{port}"]
    with served_sync(argv) as hub:
        env = {**os.environ, "AGENTHUB_HEALTHCHECK_URL": hub.url("/healthz")}
        passed = subprocess.run(command, env=env, capture_output=True, timeout=PATIENCE, check=False)
        assert passed.returncode == 0, passed.stderr
    env = {**os.environ, "AGENTHUB_HEALTHCHECK_URL": f"http://127.0.0.1:{free_port()}/healthz"}
    failed = subprocess.run(command, env=env, capture_output=True, timeout=PATIENCE, check=False)
    assert failed.returncode != 0
