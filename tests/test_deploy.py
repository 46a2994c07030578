"""The deploy files, checked offline as CI can: hadolint for the Dockerfile, the compose files
against the compose specification's schema (vendored in deploy/schemas), the kustomize-rendered
manifests against Kubernetes' strict schemas, and the image's entry command run as it is."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.test_cli import _free_port, _wait_for

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S_VERSIONS = ("1.30.0", "1.37.0")
"""The oldest Kubernetes the manifests are written for, and the newest the validator knows."""


def _tool(name: str) -> str:
    """A validator installed by ``make install`` (the test extras) beside this Python."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} is missing: `make install` installs it (pyproject.toml, test extras)"
    return found


def test_the_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [_tool("hadolint"), "--failure-threshold", "style", str(DEPLOY / "Dockerfile")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_finds_what_it_should() -> None:
    """The linter really reads the file: an unpinned base image and a root user fail."""
    bad = subprocess.run(
        [_tool("hadolint"), "-"],
        input="FROM python:latest\nRUN pip install passpost\n",
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0
    assert "DL3007" in bad.stdout  # "latest"


def _compose_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((DEPLOY / "schemas" / "compose-spec.json").read_text())
    return schema


@pytest.mark.parametrize("name", ["compose.yaml", "compose.scale.yaml"])
def test_compose_files_follow_the_compose_specification(name: str) -> None:
    document = yaml.safe_load((DEPLOY / name).read_text())
    jsonschema.Draft7Validator(_compose_schema()).validate(document)


def test_the_compose_schema_refuses_what_compose_would() -> None:
    validator = jsonschema.Draft7Validator(_compose_schema())
    assert not validator.is_valid({"services": {"a": {"image": "x", "replica": 2}}})
    assert not validator.is_valid({"services": {"a": {"depends_on": {"b": {"condition": "x"}}}}})


def test_the_scaled_compose_file_has_the_shape_ops_need() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.scale.yaml").read_text())
    services = compose["services"]
    assert "--jetstream" in services["nats"]["command"]
    assert any(v.startswith("natsdata:") for v in services["nats"]["volumes"])
    assert services["migrate"]["command"] == ["migrate"]
    for name in ("orders", "passes", "push"):
        service = services[name]
        assert service["command"] == ["serve", name]
        assert service["deploy"]["replicas"] >= 2
        waits = service["depends_on"]["migrate"]["condition"]
        assert waits == "service_completed_successfully"
    assert "./nginx.conf:/etc/nginx/conf.d/default.conf:ro" in services["proxy"]["volumes"]


def _nginx_routes() -> dict[str, str]:
    """``location /prefix/ { proxy_pass http://service; }`` of deploy/nginx.conf."""
    text = (DEPLOY / "nginx.conf").read_text()
    found = re.findall(r"location (/\w+)/ \{ proxy_pass http://(\w+); \}", text)
    return dict(found)


def test_the_proxy_routes_each_path_to_its_service() -> None:
    assert _nginx_routes() == {
        "/v1": "orders",
        "/passkit": "passes",
        "/c": "passes",
        "/assets": "passes",
        "/admin": "passes",
        "/google": "push",
    }


def _render(overlay: Path, tmp_path: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize`` of ``overlay`` in a copy of deploy/k8s whose secret files are
    stand-ins (the real ones are never in the repository)."""
    copy = tmp_path / "k8s"
    shutil.copytree(DEPLOY / "k8s", copy)
    secrets = copy / "overlays" / "production" / "secrets"
    shutil.copy(secrets / "passpost.env.example", secrets / "passpost.env")
    (secrets / "keys").mkdir()
    (secrets / "keys" / "AppleWWDRCAG4.pem").write_text("a certificate\n")
    rendered = subprocess.run(
        [_tool("kubectl"), "kustomize", str(copy / overlay)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [d for d in yaml.safe_load_all(rendered) if d]


@pytest.mark.parametrize("overlay", ["base", "overlays/production"])
def test_the_manifests_pass_the_strict_kubernetes_schemas(overlay: str, tmp_path: Path) -> None:
    documents = _render(Path(overlay), tmp_path)
    assert documents
    for document in documents:
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(document, version, strict=True)


def test_the_strict_schemas_refuse_an_unknown_field() -> None:
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "dato": {}},
            K8S_VERSIONS[0],
            strict=True,
        )


def test_production_runs_every_service_as_ops_need(tmp_path: Path) -> None:
    documents = _render(Path("overlays/production"), tmp_path)
    kinds = {f"{d['kind']}/{d['metadata']['name']}": d for d in documents}
    for name in ("orders", "passes", "push"):
        pod = kinds[f"Deployment/passpost-{name}"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["args"] == ["serve", name]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["resources"]["requests"]
        assert pod["terminationGracePeriodSeconds"] >= 30 + 5  # SIGTERM bound + preStop
        assert all(m["readOnly"] for m in container["volumeMounts"] if m["name"] == "keys")
        assert kinds[f"PodDisruptionBudget/passpost-{name}"]
        assert kinds[f"Service/passpost-{name}"]
    assert {n for n in kinds if n.startswith("HorizontalPodAutoscaler/")} == {
        "HorizontalPodAutoscaler/passpost-passes",
        "HorizontalPodAutoscaler/passpost-push",
    }
    job = kinds["Job/passpost-migrate"]["spec"]["template"]["spec"]
    assert job["containers"][0]["args"] == ["migrate"]
    assert any(n.startswith("Secret/passpost-keys-") for n in kinds)
    assert any(n.startswith("ConfigMap/passpost-config-") for n in kinds)
    rules = kinds["Ingress/passpost"]["spec"]["rules"]
    routes = {
        p["path"]: p["backend"]["service"]["name"].removeprefix("passpost-")
        for rule in rules
        for p in rule["http"]["paths"]
    }
    assert routes == _nginx_routes()


def _dockerfile_final_stage() -> tuple[dict[str, str], list[str], list[str], list[str]]:
    """The last stage's ENV, ENTRYPOINT, CMD and HEALTHCHECK command, as the image runs them."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    stage = text.split("\nFROM ")[-1]
    env: dict[str, str] = {}
    entrypoint: list[str] = []
    command: list[str] = []
    healthcheck: list[str] = []
    for line in stage.splitlines():
        instruction, _, rest = line.strip().partition(" ")
        if instruction == "ENV":
            env |= dict(pair.split("=", 1) for pair in rest.split())
        elif instruction == "ENTRYPOINT":
            entrypoint = json.loads(rest)
        elif instruction == "CMD":
            command = json.loads(rest)
        elif instruction == "HEALTHCHECK":
            healthcheck = json.loads(rest.split(" CMD ", 1)[1])
    return env, entrypoint, command, healthcheck


def test_the_image_entry_command_migrates_then_serves(tmp_path: Path) -> None:
    """What ``docker run IMAGE migrate`` then ``docker run IMAGE`` run, outside a container:
    the Dockerfile's own ENV, ENTRYPOINT and CMD, with what an operator must add."""
    image_env, entrypoint, command, healthcheck = _dockerfile_final_stage()
    assert entrypoint == ["passpost"]
    assert command == ["serve", "all"]
    port = _free_port()
    env = {
        **os.environ,
        **{k: v for k, v in image_env.items() if k != "PATH"},
        "PASSPOST_DATA_DIR": str(tmp_path / "data"),  # the image's /data volume
        "PASSPOST_PORT": str(port),
        "PASSPOST_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'data' / 'passpost.db'}",
        "PASSPOST_ADMIN_TOKEN": "a" * 32,
        "PASSPOST_SECRET_KEY": "s" * 32,
        "PASSPOST_PUBLIC_BASE_URL": "https://cards.example.com",
        "PASSPOST_LOG_LEVEL": "warning",
    }
    assert env["PASSPOST_ENVIRONMENT"] == "production"
    executable = [_tool(entrypoint[0]), *entrypoint[1:]]
    assert healthcheck[0] == "python"  # the image's, whose venv is this one's twin
    probe = [sys.executable, *healthcheck[1:]]
    migrated = subprocess.run([*executable, "migrate"], env=env, capture_output=True, timeout=120)
    assert migrated.returncode == 0, migrated.stderr.decode()
    server = subprocess.Popen([*executable, *command], env=env, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: _answers(port, "/readyz"), seconds=60)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json()
        healthy = subprocess.run(probe, env=env, capture_output=True, timeout=30)
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=60)
    assert ready["status"] == "ok", ready
    assert healthy.returncode == 0, healthy.stderr.decode()
    assert subprocess.run(probe, env=env, capture_output=True, timeout=30).returncode != 0
    # uvicorn exits by re-raising the SIGTERM it handled once shut down gracefully.
    assert server.returncode in (0, -signal.SIGTERM), stderr.decode()
    assert b"Traceback" not in stderr


def _answers(port: int, path: str) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _metric_families() -> dict[str, set[str]]:
    """Every passpost metric family and the sample names it exposes."""
    from prometheus_client import REGISTRY

    from services.core import metrics

    now = datetime.now(UTC)
    backlog = metrics.BacklogCollector([metrics.TopicBacklog("t", 1, now, 0)], now)
    families: dict[str, set[str]] = {}
    for family in [*REGISTRY.collect(), *backlog.collect()]:
        if family.name.startswith("passpost_"):
            suffixes = {
                "counter": ["_total"],
                "histogram": ["_bucket", "_sum", "_count"],
            }.get(family.type, [""])
            families[family.name] = {family.name + s for s in suffixes}
    return families


def _queries() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    alerts = yaml.safe_load((DEPLOY / "prometheus-alerts.yaml").read_text())
    panels = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    return panels + [r["expr"] for g in alerts["groups"] for r in g["rules"]]


def test_the_dashboard_and_alerts_query_metrics_that_exist() -> None:
    exposed = set().union(*_metric_families().values())
    used = {name for query in _queries() for name in re.findall(r"passpost_\w+", query)}
    assert used - exposed == set()
    families = _metric_families()
    unused = {f for f, samples in families.items() if not samples & used}
    assert unused == set()  # every metric has a panel or an alert


def test_the_alerts_cover_backlog_age_failures_and_apns() -> None:
    alerts = yaml.safe_load((DEPLOY / "prometheus-alerts.yaml").read_text())
    rules = {r["alert"]: r for g in alerts["groups"] for r in g["rules"]}
    for rule in rules.values():
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert rule["annotations"]["summary"]
    exprs = " ".join(r["expr"] for r in rules.values())
    for needed in (
        "passpost_outbox_oldest_pending_age_seconds",
        'outcome=~"failed|retried"',
        'passpost_pushes_total{outcome=~"retry|failed"}',
    ):
        assert needed in exprs


def test_every_metric_is_described_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = {f for f in _metric_families() if f"`{f}" not in readme}
    assert missing == set()
