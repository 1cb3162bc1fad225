"""Canonical prescription bytes: vectors shared with the browser's TypeScript suite (and
the signature fingerprint a printed prescription and `medihaven rx verify` show).

The web app signs e-prescriptions itself (`frontend/src/physician/prescription.ts`); the records
service verifies them over `contracts.records.canonical_prescription`. Both suites check the
same file, `tests/vectors/prescription_vectors.json`: the exact canonical text of each
prescription and its Ed25519 signature under a fixed test seed (Ed25519 is deterministic).
Regenerate it (after a deliberate format change only) with
`python -m tests.test_prescription_vectors`.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cli.sdk import sign_prescription, signature_fingerprint
from contracts.records import PrescribeRequest, canonical_prescription

VECTORS = Path(__file__).resolve().parent / "vectors" / "prescription_vectors.json"
SEED = bytes(range(32, 64))  # a test key, public on purpose
PRESCRIBER = "0b6f3c1e-7d2a-4c55-9e61-3f0a1b2c3d4e"

CASES: list[dict[str, Any]] = [
    {
        "name": "from the catalog",
        "request": {
            "prescription_id": "7f1d2c3b-4a59-4e8f-9a1b-2c3d4e5f6a7b",
            "patient_id": "1a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d",
            "encounter_id": "9e8d7c6b-5a49-4b3c-8d2e-1f0a9b8c7d6e",
            "created_at": "2026-03-01T09:30:00.123000Z",
            "medication": {
                "drug_name": "Salbutamol",
                "strength": "100 micrograms",
                "dosage_form": "inhaler",
                "dose": "2 puffs",
                "route": "inhalation",
                "frequency": "as needed",
                "duration_days": 30,
                "quantity": 1,
                "refills": 1,
                "instructions": "",
                "medicine_id": "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f",
                "free_text": False,
            },
        },
    },
    {
        "name": "free text with non-ASCII, quotes, a backslash and a line break",
        "request": {
            "prescription_id": "00000000-0000-4000-8000-000000000001",
            "patient_id": "00000000-0000-4000-8000-000000000002",
            "encounter_id": "00000000-0000-4000-8000-000000000003",
            "created_at": "2026-12-31T23:59:59.999000Z",
            "medication": {
                "drug_name": 'Ibuprofène "forte" 💊',
                "strength": "400 mg / 5 ml",
                "dosage_form": "oral_suspension",
                "dose": "5 ml",
                "route": "oral",
                "frequency": "every 8 hours",
                "duration_days": 5,
                "quantity": 100,
                "refills": 0,
                "instructions": "Nach dem Essen.\nBei Magenschmerzen absetzen \\ stop if pain.",
                "medicine_id": "",
                "free_text": True,
            },
        },
    },
    {
        "name": "signed despite safety alerts, with the reason",
        "request": {
            "prescription_id": "5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a",
            "patient_id": "1a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d",
            "encounter_id": "9e8d7c6b-5a49-4b3c-8d2e-1f0a9b8c7d6e",
            "created_at": "2026-06-15T14:05:09.000001Z",
            "medication": {
                "drug_name": "Amoxicillin",
                "strength": "500 mg",
                "dosage_form": "capsule",
                "dose": "1 capsule",
                "route": "oral",
                "frequency": "three times daily",
                "duration_days": 7,
                "quantity": 21,
                "refills": 0,
                "instructions": "",
                "medicine_id": "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e70",
                "free_text": False,
            },
            "alerts": [
                "allergy:8a7b6c5d-4e3f-4a2b-9c1d-0e1f2a3b4c5d",
                "interaction:2b3c4d5e-6f70-4a1b-8c2d-3e4f5a6b7c8e",
            ],
            "override_reason": "Penicillin allergy refuted by skin test (2025-11-02).\n"
            "Méthotrexate paused — INR checked.",
        },
    },
]


def make_vectors() -> dict[str, Any]:
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    vectors = []
    for case in CASES:
        signed = sign_prescription(key, PRESCRIBER, case["request"])
        core = PrescribeRequest.model_validate(signed).core(PRESCRIBER)
        vectors.append(
            {
                "name": case["name"],
                "core": {"prescriber_id": PRESCRIBER, **case["request"]},
                "canonical": canonical_prescription(core).decode("utf-8"),
                "signature": signed["signature"],
                "fingerprint": signature_fingerprint(signed["signature"]),
            }
        )
    return {
        "description": "canonical_prescription(core) as UTF-8 text and its Ed25519 signature "
        "under the seed; written by `python -m tests.test_prescription_vectors`",
        "private_key_seed_hex": SEED.hex(),
        "vectors": vectors,
    }


def test_shared_prescription_vectors_are_reproduced_exactly() -> None:
    assert VECTORS.exists(), f"{VECTORS} is missing: run python -m tests.test_prescription_vectors"
    assert json.loads(VECTORS.read_text(encoding="utf-8")) == make_vectors()


def test_the_vectors_verify_as_the_records_service_checks_them() -> None:
    stored = json.loads(VECTORS.read_text(encoding="utf-8"))
    public = Ed25519PrivateKey.from_private_bytes(SEED).public_key()
    for vector in stored["vectors"]:
        request = {k: v for k, v in vector["core"].items() if k != "prescriber_id"}
        parsed = PrescribeRequest.model_validate({**request, "signature": vector["signature"]})
        canonical = canonical_prescription(parsed.core(vector["core"]["prescriber_id"]))
        assert canonical.decode("utf-8") == vector["canonical"]
        public.verify(base64.b64decode(vector["signature"]), canonical)


def write_vectors() -> None:
    VECTORS.write_text(
        json.dumps(make_vectors(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


if __name__ == "__main__":
    write_vectors()
    print(f"wrote {VECTORS}")
