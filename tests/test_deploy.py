"""deploy/ is valid against the published schemas (no Docker or Kubernetes needed here).

The compose file is checked against the Compose Specification's JSON schema (shipped in
deploy/schemas/, taken from the docker-compose 1.29.2 package), the Kubernetes manifests
with kubernetes-validate's schemas for a current Kubernetes release.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from contracts.common import SERVICES

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
KUBERNETES_VERSION = "1.33"
VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?([-?])([^}]*))?\}")


def interpolate(text: str) -> str:
    """Compose's variable syntax: ${X:-default}, ${X:?error} (given a value here), ${X}."""

    def value(match: re.Match[str]) -> str:
        name, kind, rest = match.groups()
        if name in os.environ:
            return os.environ[name]
        if kind == "-":
            return rest
        return "test-value"

    return VARIABLE.sub(value, text)


def compose() -> dict[str, Any]:
    data = yaml.safe_load(interpolate((DEPLOY / "compose.yaml").read_text()))
    assert isinstance(data, dict)
    return data


def test_compose_file_matches_the_compose_specification() -> None:
    schema = json.loads((DEPLOY / "schemas" / "compose-spec.json").read_text())
    data = compose()
    data.pop("name", None)  # top-level `name` is newer than this schema revision
    jsonschema.Draft201909Validator(schema).validate(data)


def test_compose_runs_every_service_with_configurable_replicas() -> None:
    services = compose()["services"]
    for name in SERVICES:
        assert services[name]["command"] == ["python", "-m", f"services.{name}"]
        assert isinstance(services[name]["deploy"]["replicas"], int)
    assert services["gateway"]["command"] == ["python", "-m", "gateway"]
    for infrastructure in ("rabbitmq", "mariadb", "redis"):
        assert "healthcheck" in services[infrastructure]
    text = (DEPLOY / "compose.yaml").read_text()
    assert "RECORDS_REPLICAS" in text and "KEYVAULT_REPLICAS" in text


def manifests() -> list[tuple[str, dict[str, Any]]]:
    documents = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                documents.append((f"{path.name}:{document['kind']}", document))
    return documents


@pytest.mark.parametrize(("name", "document"), manifests(), ids=[n for n, _ in manifests()])
def test_kubernetes_manifest_is_valid(name: str, document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_every_service_has_a_deployment_with_probes_and_a_service() -> None:
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for _, document in manifests():
        by_kind.setdefault(document["kind"], {})[document["metadata"]["name"]] = document
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    for name in [*SERVICES, "gateway"]:
        deployment = by_kind["Deployment"][f"medihaven-{name}"]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["resources"]["requests"]
        secrets = [e for e in container["env"] if "valueFrom" in e]
        assert {e["name"] for e in secrets} == {"MEDIHAVEN_AMQP_URL", "MEDIHAVEN_DB_PASSWORD"}
        assert f"medihaven-{name}" in by_kind["Service"]
        assert f"{name}.yaml" in kustomization["resources"]


def test_the_image_builds_the_web_app_and_the_gateway_serves_it() -> None:
    """A node stage builds frontend/ from its lock file; the final image holds only the
    built files, where MEDIHAVEN_WEB_DIR points the gateway."""
    from gateway.settings import GatewaySettings

    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]
    web = next(s for s in stages if s.startswith("node:"))
    assert "COPY frontend/package.json frontend/package-lock.json" in web
    assert "RUN npm ci" in web and "RUN npm run build" in web
    final = stages[-1]
    assert final.startswith("python:")
    copied = re.search(r"^COPY --from=web (\S+)/dist (\S+)$", final, flags=re.MULTILINE)
    assert copied is not None
    assert f"MEDIHAVEN_WEB_DIR={copied.group(2)}" in final
    assert "web_dir" in GatewaySettings.model_fields
    ignored = (DEPLOY.parent / ".dockerignore").read_text().split()
    assert {"frontend/node_modules", "frontend/dist", ".venv", "var"} <= set(ignored)
