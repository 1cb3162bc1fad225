"""Every audit event type a service records is one the audit service accepts from it
(`contracts.audit.may_record`): an event it would refuse never enters the hash chain
(it is quarantined, with an alert in its place), so the action goes unrecorded.

Found in the source, statically: every `AuditType.<member>` a service's code names (the
audit helpers take nothing else, so mypy holds every event type to the enum)."""

from __future__ import annotations

import ast
from pathlib import Path

from contracts.audit import AUDIT_PUBLISHERS, AuditType, may_record
from contracts.base import GATEWAY

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ["auth", "records", "scheduling", "chat", "audit", "keyvault"]


def recorded_types(folder: Path) -> set[str]:
    found: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "AuditType"
            ):
                found.add(AuditType[node.attr].value)
    return found


def test_the_scan_finds_what_each_service_records() -> None:
    assert "allergy.record" in recorded_types(ROOT / "services" / "records")
    assert "prescription.create" in recorded_types(ROOT / "services" / "records")


def test_every_recorded_type_is_accepted_from_its_service() -> None:
    refused = [
        f"{service}: {type_}"
        for service in SERVICES
        for type_ in sorted(recorded_types(ROOT / "services" / service))
        if not may_record(type_, service)
    ]
    assert not refused, refused


def test_the_gateways_types_are_accepted_from_the_gateway() -> None:
    recorded = recorded_types(ROOT / "gateway")
    assert "gateway.signature_refused" in recorded
    assert [t for t in sorted(recorded) if not may_record(t, GATEWAY)] == []


def test_every_type_has_a_publisher_and_a_made_up_one_has_none() -> None:
    assert [t for t in AuditType if not any(may_record(t, p) for p in AUDIT_PUBLISHERS)] == []
    for forged in ("patient.exfiltrated", "patient", "", "vault.unseal.extra"):
        assert not any(may_record(forged, p) for p in AUDIT_PUBLISHERS), forged
