"""`examples/compose.yaml` and the files it mounts: two hubs on PostgreSQL and Redis behind haproxy (round robin,
no stickiness, each hub checked on `/readyz`), Prometheus scraping each hub with the metrics token, every service
with an image or a build and a health check, and no secret in any committed file.

The file follows the Compose specification (its JSON schema, as `check-jsonschema` ships it); haproxy and
Prometheus check their own configuration files (`haproxy -c`, `promtool check config`); the hubs' configuration
loads with the hub's own settings loader.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from hub.settings import load_settings
from tests.tools import REPO_ROOT
from tests.tools.patience import PATIENCE
from tests.tools.requirements import unavailable

EXAMPLES = REPO_ROOT / "examples"
COMPOSE = EXAMPLES / "compose.yaml"
HUBS = ("hub1", "hub2")
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|MASTER_KEY|API_KEY", re.IGNORECASE)


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def services() -> dict[str, Any]:
    return compose()["services"]


def mounted(service: dict[str, Any], target: str) -> Path:
    """The committed file a service mounts at `target` (bind mounts are relative to the compose file)."""
    for volume in service.get("volumes", []):
        source, _, rest = volume.partition(":")
        if rest.split(":")[0] == target:
            return (COMPOSE.parent / source).resolve()
    raise AssertionError(f"nothing mounted at {target}")


def test_the_stack_has_two_hubs_a_database_redis_a_load_balancer_and_prometheus() -> None:
    assert set(services()) == {"postgres", "redis", *HUBS, "lb", "prometheus"}


def check_compose_spec(path: Path) -> subprocess.CompletedProcess[str]:
    if importlib.util.find_spec("check_jsonschema") is None:
        unavailable("check-jsonschema", "pip install -e '.[dev]'")
    argv = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=PATIENCE, check=False)


def test_the_compose_file_follows_the_compose_specification(tmp_path: Path) -> None:
    run = check_compose_spec(COMPOSE)
    assert run.returncode == 0, run.stdout + run.stderr
    misspelt = tmp_path / "compose.yaml"  # the check can fail: one misspelt key
    misspelt.write_text(COMPOSE.read_text(encoding="utf-8").replace("healthcheck:", "healthchek:", 1), "utf-8")
    run = check_compose_spec(misspelt)
    assert run.returncode != 0
    assert "'healthchek' was unexpected" in run.stdout


def test_every_service_has_an_image_or_a_build_and_a_health_check() -> None:
    for name, service in services().items():
        assert service.get("image") or service.get("build"), name
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD" and len(test) > 1, name
        assert service.get("restart") == "unless-stopped", name


def test_the_hubs_are_built_from_this_repository_and_wait_for_their_stores() -> None:
    for name in HUBS:
        hub = services()[name]
        assert (COMPOSE.parent / hub["build"]["context"] / hub["build"]["dockerfile"]).resolve() == (
            REPO_ROOT / "Dockerfile"
        )
        assert hub["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
        }
        assert "/readyz" in " ".join(hub["healthcheck"]["test"])
        assert "ports" not in hub  # reached through the load balancer only


def test_the_hubs_environment_points_at_the_database_and_redis_services() -> None:
    everything = services()
    for name in HUBS:
        env = everything[name]["environment"]
        database = urlsplit(env["AGENTHUB_DATABASE_URL"])
        assert database.scheme == "postgresql+psycopg"
        assert (database.hostname, database.port, database.path) == ("postgres", 5432, "/agenthub")
        assert database.username == everything["postgres"]["environment"]["POSTGRES_USER"]
        assert database.password is None  # from PGPASSWORD in the env file
        redis = urlsplit(env["AGENTHUB_REDIS_URL"])
        assert (redis.scheme, redis.hostname, redis.port) == ("redis", "redis", 6379)
        assert "metrics_token" in everything[name]["secrets"]


def test_the_hubs_configuration_loads_with_the_metrics_token_from_the_compose_secret(tmp_path: Path) -> None:
    config = mounted(services()["hub1"], services()["hub1"]["environment"]["AGENTHUB_CONFIG"])
    assert mounted(services()["hub2"], "/etc/agenthub/agenthub.toml") == config
    text = config.read_text(encoding="utf-8")
    assert 'token = "file:/run/secrets/metrics_token"' in text  # where compose mounts the secret `metrics_token`
    secret = tmp_path / "metrics_token"
    secret.write_text("scrape-token-for-the-test\n", encoding="utf-8")
    copy = tmp_path / "agenthub.toml"
    copy.write_text(text.replace("/run/secrets/metrics_token", str(secret)), encoding="utf-8")
    settings = load_settings(copy)
    assert settings.hub.listen == "0.0.0.0:8787"
    assert settings.metrics.token == "scrape-token-for-the-test"
    assert [server.command for server in settings.servers.values()] == ["mcp-server-time"]


def test_only_the_load_balancer_and_prometheus_publish_ports() -> None:
    published = {name: service["ports"] for name, service in services().items() if "ports" in service}
    assert published == {"lb": ["8787:8787", "127.0.0.1:8404:8404"], "prometheus": ["127.0.0.1:9090:9090"]}


def test_no_secret_is_written_in_a_committed_file() -> None:
    spec = compose()
    for name, service in spec["services"].items():
        for variable in service.get("environment", {}):
            assert not SECRET_NAME.search(variable), f"{name} sets {variable} in compose.yaml"
    env_files = {service["env_file"] for service in spec["services"].values() if "env_file" in service}
    assert env_files == {"agenthub.env"}
    secret_files = {secret["file"] for secret in spec["secrets"].values()}
    assert secret_files == {"./secrets/metrics-token"}
    for path in (*env_files, *secret_files):
        ignored = subprocess.run(
            ["git", "check-ignore", "-q", str(EXAMPLES / path)], cwd=REPO_ROOT, timeout=PATIENCE, check=False
        )
        assert ignored.returncode == 0, f"{path} is not ignored by git"
    template = (EXAMPLES / "agenthub.env.example").read_text(encoding="utf-8")
    values = dict(line.split("=", 1) for line in template.splitlines() if line and not line.startswith("#"))
    assert set(values) == {"POSTGRES_PASSWORD", "PGPASSWORD", "AGENTHUB_MASTER_KEY", "AGENTHUB_ADMIN_TOKEN"}
    assert set(values.values()) == {"change-me"}


def test_haproxy_balances_round_robin_without_stickiness_and_checks_readiness() -> None:
    config_path = mounted(services()["lb"], "/usr/local/etc/haproxy/haproxy.cfg")
    lines = [ln.split("#")[0].strip() for ln in config_path.read_text(encoding="utf-8").splitlines()]
    backend = lines[lines.index("backend hubs") + 1 :]
    backend = backend[: next((i for i, ln in enumerate(backend) if ln and not ln[0].isspace() and
                              ln.split()[0] in ("frontend", "backend", "listen")), len(backend))]  # fmt: skip
    assert "balance roundrobin" in backend
    assert not [ln for ln in lines if ln.split()[:1] in (["cookie"], ["stick"], ["stick-table"], ["hash-type"])]
    assert "http-check send meth GET uri /readyz" in backend
    assert "http-check expect status 200" in backend
    assert any(ln.startswith("default-server check") for ln in backend)
    assert [ln.split()[1:3] for ln in backend if ln.startswith("server ")] == [[h, f"{h}:8787"] for h in HUBS]


def test_haproxy_accepts_the_load_balancer_configuration() -> None:
    haproxy = shutil.which("haproxy") or shutil.which("/usr/sbin/haproxy")
    if haproxy is None:
        unavailable("haproxy", "apt-get install haproxy")
    config_path = mounted(services()["lb"], "/usr/local/etc/haproxy/haproxy.cfg")
    run = subprocess.run([haproxy, "-c", "-f", str(config_path)], capture_output=True, text=True, timeout=PATIENCE)
    assert run.returncode == 0, run.stderr
    warnings = [ln for ln in run.stderr.splitlines() if "[WARNING]" in ln or "[ALERT]" in ln]
    # Only the service names, which resolve inside the compose network and not here.
    assert all(re.search(r"could not resolve address 'hub[12]'", ln) for ln in warnings), warnings


def test_prometheus_scrapes_each_hub_with_the_metrics_token() -> None:
    prometheus = services()["prometheus"]
    config_path = mounted(prometheus, "/etc/prometheus/prometheus.yml")
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"] == {"type": "Bearer", "credentials_file": "/run/secrets/metrics_token"}
    assert prometheus["secrets"] == ["metrics_token"]
    (targets,) = job["static_configs"]
    assert targets["targets"] == [f"{h}:8787" for h in HUBS]  # each replica, not the load balancer
    promtool = shutil.which("promtool")
    if promtool is None:
        unavailable("promtool", "apt-get install prometheus")
    run = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(config_path)],
        capture_output=True, text=True, timeout=PATIENCE, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
