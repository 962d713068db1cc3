"""The Helm chart in `deploy/helm/agenthub`: `helm lint --strict` finds nothing above "info", and the manifests it
renders (defaults, and every option on) are valid Kubernetes objects for the oldest and the newest Kubernetes the
offline schemas cover, with secrets only through `secretKeyRef`, probes on `/healthz` and `/readyz`, resource
requests and limits, a non-root read-only container, and an `agenthub.toml` the hub's own loader accepts.

Helm's own engine renders and lints here (the `helm-python-sdk` package binds Helm's Go SDK; no cluster, no helm
binary); `kubernetes-validate` checks each object against the Kubernetes OpenAPI schemas it ships (strict: no
unknown fields).
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hub.settings import load_settings
from tests.tools import REPO_ROOT
from tests.tools.requirements import unavailable

CHART = REPO_ROOT / "deploy" / "helm" / "agenthub"
KUBERNETES = ("1.27.0", "1.37.0")
"""The chart's `kubeVersion` floor and the newest schemas `kubernetes-validate` ships."""

EVERYTHING: dict[str, Any] = {
    "replicaCount": 3,
    "image": {"repository": "registry.example.com/agenthub", "tag": "0.1.0-rc1"},
    "imagePullSecrets": [{"name": "registry"}],
    "workers": 4,
    "shutdownGraceSeconds": 60,
    "secrets": {"metricsToken": {"name": "agenthub-metrics", "key": "token"}},
    "allowedHosts": ["hub.internal:*"],
    "extraConfig": '[servers.time]\ntransport = "stdio"\ncommand = "mcp-server-time"\n',
    "extraEnv": [{"name": "AGENTHUB_LOG_LEVEL", "value": "info"}],
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "annotations": {"nginx.ingress.kubernetes.io/proxy-read-timeout": "3600"},
        "hosts": [{"host": "hub.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}],
        "tls": [{"secretName": "hub-tls", "hosts": ["hub.example.com"]}],
    },
    "podAnnotations": {"prometheus.io/scrape": "true"},
    "nodeSelector": {"kubernetes.io/arch": "amd64"},
    "tolerations": [{"key": "ai", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "agenthub"}}}}
    ]}},
    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                   "whenUnsatisfiable": "ScheduleAnyway",
                                   "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "agenthub"}}}],
}  # fmt: skip


def helm() -> Any:
    if importlib.util.find_spec("helm_python") is None:
        unavailable("helm-python-sdk", "pip install -e '.[dev]'")
    import helm_python

    return helm_python


def kubernetes_validate() -> Any:
    if importlib.util.find_spec("kubernetes_validate") is None:
        unavailable("kubernetes-validate", "pip install -e '.[dev]'")
    import kubernetes_validate as validate

    return validate


def render(values: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """The chart's objects for `values`, keyed by kind."""
    with helm().Chart.load(CHART) as chart:
        manifests: dict[str, str] = chart.render(values, name="hub", namespace="ai")
    objects: dict[str, dict[str, Any]] = {}
    for path, text in manifests.items():
        if path.endswith(".txt"):
            continue
        for document in yaml.safe_load_all(text):
            if document:
                assert document["kind"] not in objects, path
                objects[document["kind"]] = document
    return objects


def container(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (only,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    return only


def env_of(objects: dict[str, dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for variable in container(objects)["env"]:
        yield variable["name"], variable


def test_helm_lint_strict_finds_nothing_above_info() -> None:
    for values in (None, EVERYTHING):
        report = helm().lint(CHART, values, strict=True, kube_version=f"v{KUBERNETES[0]}")
        assert report["errors"] == []
        assert [m for m in report["messages"] if m["severity"] > 1] == []


@pytest.mark.parametrize("values", [None, EVERYTHING], ids=["defaults", "everything"])
@pytest.mark.parametrize("version", KUBERNETES)
def test_every_rendered_object_is_valid_for_kubernetes(values: dict[str, Any] | None, version: str) -> None:
    validate = kubernetes_validate()
    objects = render(values)
    expected = {"ConfigMap", "Deployment", "Service", "ServiceAccount", "PodDisruptionBudget"}
    assert set(objects) == (expected | {"Ingress"} if values else expected)
    for document in objects.values():
        validate.validate(document, version, strict=True)


def test_the_validator_refuses_what_kubernetes_would() -> None:
    """The check above can fail: a Deployment with a string for `replicas`, or an unknown field, is refused."""
    validate = kubernetes_validate()
    deployment = render()["Deployment"]
    with pytest.raises(validate.ValidationError):
        validate.validate({**deployment, "spec": {**deployment["spec"], "replicas": "two"}}, KUBERNETES[0], strict=True)
    with pytest.raises(validate.ValidationError):
        validate.validate({**deployment, "spec": {**deployment["spec"], "replica": 2}}, KUBERNETES[0], strict=True)


def test_every_secret_comes_from_an_existing_kubernetes_secret() -> None:
    objects = render(EVERYTHING)
    refs = {
        name: (v["valueFrom"]["secretKeyRef"]["name"], v["valueFrom"]["secretKeyRef"]["key"])
        for name, v in env_of(objects)
        if "valueFrom" in v
    }
    assert refs == {
        "AGENTHUB_DATABASE_URL": ("agenthub", "database-url"),
        "AGENTHUB_REDIS_URL": ("agenthub", "redis-url"),
        "AGENTHUB_MASTER_KEY": ("agenthub", "master-key"),
        "AGENTHUB_ADMIN_TOKEN": ("agenthub", "admin-token"),
        "AGENTHUB_METRICS_TOKEN": ("agenthub-metrics", "token"),
    }
    literal = {name: v["value"] for name, v in env_of(objects) if "value" in v}
    assert literal == {"AGENTHUB_CONFIG": "/etc/agenthub/agenthub.toml", "AGENTHUB_LOG_LEVEL": "info"}
    assert "Secret" not in objects  # the chart creates none
    assert "AGENTHUB_METRICS_TOKEN" not in dict(env_of(render()))  # only when a metrics secret is named


def test_a_missing_secret_name_stops_the_render_with_its_name() -> None:
    with pytest.raises(helm().HelmRenderError, match=r"secrets\.databaseUrl\.name is required"):
        render({"secrets": {"databaseUrl": {"name": ""}}})


def test_probes_resources_and_security() -> None:
    objects = render()
    main = container(objects)
    assert main["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert main["ports"] == [{"name": "http", "containerPort": 8787, "protocol": "TCP"}]
    assert main["args"] == ["serve", "--listen", "0.0.0.0:8787"]
    assert set(main["resources"]) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(main["resources"]["limits"])
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert main["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert pod["automountServiceAccountToken"] is False
    writable = {m["mountPath"] for m in main["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"/var/lib/agenthub", "/tmp"}  # the rest of the file system is read-only
    assert pod["terminationGracePeriodSeconds"] == 45  # the drain time and a margin


def test_the_service_the_disruption_budget_and_the_ingress_select_the_pods() -> None:
    objects = render(EVERYTHING)
    deployment = objects["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    assert objects["Service"]["spec"]["selector"] == labels
    assert objects["PodDisruptionBudget"]["spec"] == {"minAvailable": 1, "selector": {"matchLabels": labels}}
    (rule,) = objects["Ingress"]["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": objects["Service"]["metadata"]["name"], "port": {"name": "http"}}
    assert "PodDisruptionBudget" not in render({"podDisruptionBudget": {"enabled": False}})


def test_the_config_map_holds_a_config_the_hub_loads(tmp_path: Path) -> None:
    objects = render(EVERYTHING)
    text = objects["ConfigMap"]["data"]["agenthub.toml"]
    assert tomllib.loads(text)["metrics"] == {"token": "env:AGENTHUB_METRICS_TOKEN"}
    config = tmp_path / "agenthub.toml"
    config.write_text(text, encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AGENTHUB_METRICS_TOKEN", "from-the-secret")
        settings = load_settings(config)
    assert settings.hub.listen == "0.0.0.0:8787"
    assert settings.hub.workers == 4
    assert settings.hub.shutdown_grace_s == 60
    assert settings.hub.allowed_hosts == ["hub.example.com", "hub.internal:*"]
    assert settings.metrics.token == "from-the-secret"
    assert list(settings.servers) == ["time"]
    mount = next(m for m in container(objects)["volumeMounts"] if m["name"] == "config")
    assert mount["mountPath"] + "/agenthub.toml" == dict(env_of(objects))["AGENTHUB_CONFIG"]["value"]


def test_a_config_change_rolls_the_pods() -> None:
    def checksum(values: dict[str, Any] | None) -> str:
        return render(values)["Deployment"]["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum(None) == checksum(None)
    assert checksum(None) != checksum({"extraConfig": '[servers.time]\ntransport = "stdio"\ncommand = "x"\n'})


def test_the_values_file_names_no_secret_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert set(values["secrets"]) == {"databaseUrl", "redisUrl", "masterKey", "adminToken", "metricsToken"}
    assert all(set(ref) == {"name", "key"} for ref in values["secrets"].values())


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"workers": "many"}, "/workers"),
        ({"replicaCount": 0}, "/replicaCount"),
        ({"secrets": {"databaseUrl": {"nmae": "agenthub"}}}, "'nmae' not allowed"),
        ({"replicas": 3}, "'replicas' not allowed"),
        ({"probes": {"readiness": {"httpGet": {"path": "readyz", "port": "http"}}}}, "/probes/readiness/httpGet/path"),
    ],
)
def test_values_the_schema_refuses(values: dict[str, Any], complaint: str) -> None:
    """`values.schema.json` stops a typo or a wrong type before anything renders (`helm install` checks it too)."""
    with pytest.raises(helm().HelmValuesError, match=re.escape(complaint)):
        render(values)
