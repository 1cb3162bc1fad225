"""Every audit event type a service records is one the audit service accepts from it
(`contracts.audit.may_record`): an event it would refuse never enters the hash chain
(it is quarantined, with an alert in its place), so the action goes unrecorded.

Found in the source, statically: every string constant given as the event type to
`audited(ctx, type, …)`, `audit.make_event(source, type, …)` and `Subject(type, …)`."""

from __future__ import annotations

import ast
from pathlib import Path

from contracts.audit import may_record

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ["auth", "records", "scheduling", "chat", "audit", "keyvault"]
CALLS = {"audited": 1, "make_event": 1, "Subject": 0}
"""Function name -> the position of the event type among its arguments."""


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def recorded_types(folder: Path) -> set[str]:
    found: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            position = CALLS.get(_name(node.func) or "")
            if position is None or len(node.args) <= position:
                continue
            arg = node.args[position]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.add(arg.value)
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
