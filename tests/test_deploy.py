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

from contracts.common import IDENTITIES, SERVICES

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


def test_compose_gives_each_process_only_its_own_broker_password() -> None:
    data = compose()
    services = data["services"]
    assert set(data["secrets"]) == {f"amqp-{i}" for i in IDENTITIES} | {"rabbitmq-cookie"}
    for name in [*SERVICES, "gateway"]:
        mounted = services[name]["secrets"]
        assert mounted == [{"source": f"amqp-{name}", "target": f"/run/secrets/amqp/{name}"}]
        url = services[name]["environment"]["MEDIHAVEN_AMQP_URL"]
        assert "@" not in url  # no credentials in the URL
        assert services[name]["depends_on"]["broker-users"]["condition"] == (
            "service_completed_successfully"
        )
    assert services["broker-users"]["command"][-3:] == ["provision", "--via", "http"]


def test_compose_has_a_three_node_rabbitmq_cluster_under_a_profile() -> None:
    data = compose()
    services = data["services"]
    nodes = [f"rabbitmq-{i}" for i in (1, 2, 3)]
    for name in nodes:
        node = services[name]
        assert node["profiles"] == ["clustered"]
        assert node["hostname"] == name
        assert node["environment"]["RABBITMQ_NODENAME"] == f"rabbit@{name}"
        assert node["secrets"][0]["source"] == "rabbitmq-cookie"
        assert "healthcheck" in node
    assert "rabbitmq-cookie" not in str(services["rabbitmq"])  # the single node needs none
    config = (DEPLOY / data["configs"]["rabbitmq-cluster"]["file"]).read_text()
    for name in nodes:
        assert f"rabbit@{name}" in config
    # the services take the node list from the environment (empty: the single node)
    assert "MEDIHAVEN_AMQP_NODES" in services["records"]["environment"]


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
        assert {e["name"] for e in secrets} == {"MEDIHAVEN_DB_PASSWORD"}
        # its own broker password, and no other identity's
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        amqp = volumes["amqp"]["secret"]
        assert amqp["secretName"] == "medihaven-amqp"
        assert amqp["items"] == [{"key": name, "path": name}]
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


def _name(requirement: str) -> str:
    """A requirement's distribution name, normalised as PEP 503 does."""
    bare = re.split(r"[\[<>=!~;\s]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", bare).lower()


def test_every_python_dependency_is_pinned_by_the_lock_file_install_and_image_use() -> None:
    import tomllib

    root = DEPLOY.parent
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    wanted |= {_name(r) for extra in project["optional-dependencies"].values() for r in extra}
    lines = [
        line
        for line in (root / "requirements.lock").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+(\[[^\]]+\])?==[^\s=]+", line) for line in lines)
    pinned = [_name(line) for line in lines]
    assert len(pinned) == len(set(pinned)), "a package is pinned twice"
    assert wanted <= set(pinned), f"not in requirements.lock: {sorted(wanted - set(pinned))}"
    assert "-c requirements.lock" in (root / "Makefile").read_text()
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "COPY pyproject.toml README.md requirements.lock" in dockerfile
    assert "pip wheel --no-cache-dir -c requirements.lock" in dockerfile


def test_kubernetes_runs_rabbitmq_as_three_nodes_the_services_all_know() -> None:
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for _, document in manifests():
        by_kind.setdefault(document["kind"], {})[document["metadata"]["name"]] = document
    nodes = by_kind["StatefulSet"]["rabbitmq"]
    count, headless = nodes["spec"]["replicas"], nodes["spec"]["serviceName"]
    assert count == 3
    assert by_kind["Service"][headless]["spec"]["clusterIP"] == "None"
    listed = by_kind["ConfigMap"]["medihaven-config"]["data"]["MEDIHAVEN_AMQP_NODES"]
    assert listed.split(",") == [f"rabbitmq-{i}.{headless}:5672" for i in range(count)]
    config = by_kind["ConfigMap"]["rabbitmq-config"]["data"]["rabbitmq.conf"]
    for i in range(count):
        assert f"rabbit@rabbitmq-{i}.{headless}" in config
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    assert "rabbitmq.yaml" in kustomization["resources"]


def test_the_readme_documents_every_setting() -> None:
    """Each `mesh.settings.Settings` field has a row in the README's configuration table,
    by its variable (`MEDIHAVEN_X`) or, beside a related one, by its suffix (`_X`)."""
    from mesh.settings import Settings

    readme = (DEPLOY.parent / "README.md").read_text()
    start = readme.index("## Configuration")
    table = readme[start : readme.index("\n## ", start + 1)]
    missing = [
        f"MEDIHAVEN_{name.upper()}"
        for name in Settings.model_fields
        if f"MEDIHAVEN_{name.upper()}" not in table and f"`_{name.upper()}`" not in table
    ]
    assert not missing, f"settings missing from the README's configuration table: {missing}"
