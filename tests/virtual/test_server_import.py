"""`agenthub servers import FILE`: entries from the MCP registry's `server.json` format (samples written from its
schema: npm, PyPI and OCI packages with runtime hints, arguments and environment variables; streamable-http and
SSE remotes with headers), printed as TOML the hub loads, or added to a running hub with `--add`."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from hub.cli.main import main as cli
from hub.settings import settings_from_dict
from tests.admin.helpers import tool_call
from tests.hub.harness import ALICE, base_config, running_hub
from tests.tools import SERVERS_DIR
from tests.tools.patience import PATIENCE

SCHEMA = "https://static.modelcontextprotocol.io/schemas/2025-09-29/server.schema.json"

NPM = {
    "$schema": SCHEMA,
    "name": "io.github.acme/weather-mcp",
    "description": "Weather forecasts",
    "version": "1.2.0",
    "packages": [
        {
            "registryType": "npm",
            "identifier": "@acme/weather-mcp",
            "version": "1.2.0",
            "transport": {"type": "stdio"},
            "packageArguments": [
                {"type": "named", "name": "--units", "value": "metric"},
                {"type": "positional", "valueHint": "data_dir", "description": "Where forecasts are cached"},
            ],
            "environmentVariables": [
                {"name": "WEATHER_API_KEY", "description": "API key", "isRequired": True, "isSecret": True},
                {"name": "WEATHER_REGION", "description": "Default region"},
            ],
        }
    ],
    "remotes": [
        {
            "type": "streamable-http",
            "url": "https://weather.example.com/mcp",
            "headers": [
                {"name": "Authorization", "value": "Bearer {token}", "isRequired": True, "isSecret": True},
                {"name": "X-Tenant", "description": "Tenant id"},
            ],
        }
    ],
}
PYPI = {
    "name": "io.github.acme/files",
    "version": "0.4.1",
    "packages": [
        {
            "registryType": "pypi",
            "identifier": "acme-files-mcp",
            "version": "0.4.1",
            "runtimeHint": "uvx",
            "transport": {"type": "stdio"},
            "packageArguments": [
                {
                    "type": "named",
                    "name": "--root",
                    "value": "{root}",
                    "variables": {"root": {"description": "Folder to serve", "isRequired": True}},
                }
            ],
        }
    ],
}
OCI = {
    "name": "io.github.acme/db",
    "version": "2.0.0",
    "packages": [
        {
            "registryType": "oci",
            "identifier": "ghcr.io/acme/db-mcp",
            "version": "2.0.0",
            "runtimeHint": "docker",
            "transport": {"type": "stdio"},
            "runtimeArguments": [{"type": "named", "name": "--network", "value": "host"}],
            "environmentVariables": [{"name": "DB_URL", "isRequired": True, "isSecret": True}],
        }
    ],
}
SSE = {"name": "com.example/events", "remotes": [{"type": "sse", "url": "https://events.example.com/sse"}]}


def _import(tmp_path: Path, capsys: pytest.CaptureFixture[str], document: Any, *flags: str) -> tuple[int, str, str]:
    path = tmp_path / "server.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    status = cli(["servers", "import", str(path), *flags])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_an_npm_package_becomes_an_npx_entry_with_env_references(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, out, _ = _import(tmp_path, capsys, NPM)
    assert status == 0
    entry = tomllib.loads(out)["servers"]["weather-mcp"]
    assert entry == {
        "transport": "stdio",
        "command": "npx",
        "args": ["-y", "@acme/weather-mcp@1.2.0", "--units", "metric", "{data_dir}"],
        "env": {"WEATHER_API_KEY": "env:WEATHER_API_KEY", "WEATHER_REGION": "env:WEATHER_REGION"},
    }
    assert "#   WEATHER_API_KEY (required, secret) - API key" in out
    assert "#   {data_dir}" in out
    monkeypatch.setenv("WEATHER_API_KEY", "k-123")
    monkeypatch.setenv("WEATHER_REGION", "eu")
    settings = settings_from_dict(tomllib.loads(out), tmp_path / "agenthub.toml")
    assert settings.servers["weather-mcp"].env == {"WEATHER_API_KEY": "k-123", "WEATHER_REGION": "eu"}  # type: ignore[union-attr]


def test_a_remote_becomes_an_http_entry_whose_headers_are_env_references(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, out, _ = _import(tmp_path, capsys, NPM, "--remote", "--name", "weather")
    assert status == 0
    entry = tomllib.loads(out)["servers"]["weather"]
    assert entry == {
        "transport": "http",
        "url": "https://weather.example.com/mcp",
        "headers": {"Authorization": "env:WEATHER_AUTHORIZATION", "X-Tenant": "env:WEATHER_X_TENANT"},
    }
    assert "e.g. Bearer {token}" in out
    monkeypatch.setenv("WEATHER_AUTHORIZATION", "Bearer t")
    monkeypatch.setenv("WEATHER_X_TENANT", "acme")
    settings = settings_from_dict(tomllib.loads(out), tmp_path / "agenthub.toml")
    assert settings.servers["weather"].headers["Authorization"] == "Bearer t"  # type: ignore[union-attr]
    status, out, _ = _import(tmp_path, capsys, SSE)
    assert tomllib.loads(out)["servers"]["events"] == {"transport": "sse", "url": "https://events.example.com/sse"}


def test_pypi_and_oci_packages_follow_their_runtime_hints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = _import(tmp_path, capsys, PYPI)
    assert tomllib.loads(out)["servers"]["files"] == {
        "transport": "stdio",
        "command": "uvx",
        "args": ["acme-files-mcp==0.4.1", "--root", "{root}"],
    }
    assert "#   {root} (required) - Folder to serve" in out
    _, out, _ = _import(tmp_path, capsys, OCI)
    assert tomllib.loads(out)["servers"]["db"] == {
        "transport": "stdio",
        "command": "docker",
        "args": ["run", "-i", "--rm", "-e", "DB_URL", "--network", "host", "ghcr.io/acme/db-mcp:2.0.0"],
        "env": {"DB_URL": "env:DB_URL"},
    }


def test_a_file_the_hub_cannot_use_is_refused_with_a_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = _import(tmp_path, capsys, {"description": "no name"})
    assert status == 1 and "has no 'name'" in err
    bundle = {"name": "x/y", "packages": [{"registryType": "mcpb", "identifier": "https://example.com/y.mcpb"}]}
    status, _, err = _import(tmp_path, capsys, bundle)
    assert status == 1 and "neither an npm, PyPI or OCI package" in err
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    assert cli(["servers", "import", str(tmp_path / "broken.json")]) == 1
    assert "is not JSON" in capsys.readouterr().err


@pytest.mark.anyio
async def test_add_reaches_a_running_hub(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    local = {
        "name": "io.github.acme/local-fixture",
        "packages": [
            {
                "registryType": "pypi",
                "identifier": str(SERVERS_DIR / "fixture_server.py"),
                "runtimeHint": sys.executable,
                "transport": {"type": "stdio"},
                "packageArguments": [{"type": "named", "name": "--name", "value": "imported"}],
                "environmentVariables": [{"name": "FIXTURE_GREETING", "description": "unused by the fixture"}],
            }
        ],
    }
    monkeypatch.setenv("FIXTURE_GREETING", "hello")
    path = tmp_path / "server.json"
    path.write_text(json.dumps(local), encoding="utf-8")
    config_file = tmp_path / "agenthub.toml"
    config_file.write_text(f'[hub]\ndatabase = "sqlite:///{tmp_path / "hub.db"}"\n', encoding="utf-8")
    argv = ["servers", "import", str(path), "--add", "--config", str(config_file)]
    async with running_hub(base_config({}), tmp_path) as hub, httpx2.AsyncClient() as http:
        assert await anyio.to_thread.run_sync(cli, argv) == 0
        assert "FIXTURE_GREETING" in capsys.readouterr().out
        with anyio.fail_after(PATIENCE):
            while True:
                response = await http.post(
                    hub.url("/v1/mcp/tool/execute"),
                    json=tool_call("local-fixture__echo", '{"message": "m"}'),
                    headers={"Authorization": f"Bearer {ALICE}"},
                )
                if response.status_code == 200:
                    break
                await anyio.sleep(0.05)
        assert await anyio.to_thread.run_sync(cli, argv) == 1
        assert "exists already" in capsys.readouterr().err
