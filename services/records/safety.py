"""The prescribing check: pure logic over the vocabulary, the patient's allergies and their
active prescriptions (the handlers in `prescribing` fetch and decrypt them).

For the medication about to be signed it finds, each as one blocking alert:
- allergy: an active allergy to one of its ingredients, to one of its classes, or to an
  ingredient sharing an allergy class with it (penicillin -> amoxicillin); free-text
  allergies are matched by name;
- cross_sensitivity: its class may cross-react with an allergy's class (penicillins ->
  cephalosporins);
- duplicate_therapy: an active prescription with the same ingredient, or of the same
  class where the class says two at once is a duplicate;
- interaction: an active prescription forming a pair of the interaction table;
- unchecked: what could not be checked (a drug outside the vocabulary, a prescription
  row failing its integrity check).

Alert codes name the allergy or prescription they are about (`allergy:<allergy id>`), so
the same situation gives the same codes at checking and at signing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from contracts import records as rec
from services.records.knowledge import CLASS, INGREDIENT, Drug, Knowledge


@dataclass(frozen=True)
class Active:
    """An active prescription of the patient and what it is made of."""

    prescription: rec.Prescription
    drug: Drug


def _words(text: str) -> str:
    return " " + " ".join("".join(c if c.isalnum() else " " for c in text.casefold()).split()) + " "


def _label(medication: rec.Medication) -> str:
    return f"{medication.drug_name} {medication.strength}".strip()


def _alert(
    kind: rec.AlertKind,
    what: str,
    severity: rec.AlertSeverity,
    message: str,
    *,
    allergy_id: str | None = None,
    prescription_id: str | None = None,
) -> rec.SafetyAlert:
    return rec.SafetyAlert(
        code=f"{kind.value}:{what}",
        kind=kind,
        severity=severity,
        message=message,
        allergy_id=allergy_id,
        prescription_id=prescription_id,
    )


def _cross(knowledge: Knowledge, cls: str) -> set[str]:
    """Classes that may cross-react with `cls` (either side may say so)."""
    classes = knowledge.data.classes
    out = set(classes[cls].cross_sensitive)
    out |= {name for name, entry in classes.items() if cls in entry.cross_sensitive}
    return out


def _allergen_classes(knowledge: Knowledge, code: str) -> set[str]:
    """The classes an allergy stands for: a class itself, or an ingredient's allergy
    classes (an allergy to penicillin is one to the penicillins)."""
    if code.startswith(CLASS):
        return {code.removeprefix(CLASS)}
    ingredient = code.removeprefix(INGREDIENT)
    return {c for c in knowledge.classes_of(ingredient) if knowledge.data.classes[c].allergy_group}


def _severity_text(allergy: rec.AllergyEntry) -> str:
    parts = [allergy.severity.value] if allergy.severity is not rec.AllergySeverity.unknown else []
    if allergy.reaction:
        parts.append(allergy.reaction)
    return f" ({', '.join(parts)})" if parts else ""


def _allergy_alert(allergy: rec.AllergyEntry, message: str) -> rec.SafetyAlert:
    """A high alert: the drug is, or contains, what the patient is allergic to."""
    return _alert(
        rec.AlertKind.allergy,
        allergy.allergy_id,
        rec.AlertSeverity.high,
        message,
        allergy_id=allergy.allergy_id,
    )


def allergy_alerts(
    knowledge: Knowledge,
    medication: rec.Medication,
    drug: Drug,
    allergies: Sequence[rec.AllergyEntry],
) -> list[rec.SafetyAlert]:
    alerts: list[rec.SafetyAlert] = []
    label = _label(medication)
    for allergy in allergies:
        if allergy.status is not rec.AllergyStatus.active:
            continue
        known = f"Allergy to {allergy.substance}{_severity_text(allergy)}"
        code = allergy.code if allergy.code and knowledge.known(allergy.code) else None
        code = code or knowledge.resolve(allergy.substance)
        if code is None:
            # Free text outside the vocabulary: matched by name.
            name = _words(allergy.substance)
            haystack = _words(" ".join([medication.drug_name, *sorted(drug.ingredients)]))
            if name.strip() and name in haystack:
                alerts.append(_allergy_alert(allergy, f"{known}: {label} matches it by name."))
            continue
        if code.startswith(INGREDIENT) and code.removeprefix(INGREDIENT) in drug.ingredients:
            reason = f"{label} contains {code.removeprefix(INGREDIENT)}."
        else:
            shared = sorted(_allergen_classes(knowledge, code) & drug.classes)
            reason = (
                f"{label} is one of the {knowledge.title(CLASS + shared[0])}." if shared else ""
            )
        if reason:
            alerts.append(_allergy_alert(allergy, f"{known}: {reason}"))
            continue
        for cls in sorted(_allergen_classes(knowledge, code)):
            reacting = sorted(_cross(knowledge, cls) & drug.classes)
            if reacting:
                severe = allergy.severity is rec.AllergySeverity.severe
                alerts.append(
                    _alert(
                        rec.AlertKind.cross_sensitivity,
                        allergy.allergy_id,
                        rec.AlertSeverity.high if severe else rec.AlertSeverity.moderate,
                        f"Possible cross-sensitivity. {known}; {label} is one of the "
                        f"{knowledge.title(CLASS + reacting[0])}, which can cross-react with "
                        f"the {knowledge.title(CLASS + cls)}.",
                        allergy_id=allergy.allergy_id,
                    )
                )
                break
    return alerts


def _since(prescription: rec.Prescription) -> str:
    return prescription.created_at.date().isoformat()


def therapy_alerts(
    knowledge: Knowledge, medication: rec.Medication, drug: Drug, active: Sequence[Active]
) -> list[rec.SafetyAlert]:
    alerts: list[rec.SafetyAlert] = []
    for other in active:
        theirs = other.prescription
        label = f"{_label(theirs.medication)} (active since {_since(theirs)})"
        same = sorted(drug.ingredients & other.drug.ingredients)
        classes = sorted(
            c for c in drug.classes & other.drug.classes if knowledge.data.classes[c].duplicates
        )
        if same or classes:
            why = (
                f"also contains {same[0]}"
                if same
                else (f"is also one of the {knowledge.title(CLASS + classes[0])}")
            )
            alerts.append(
                _alert(
                    rec.AlertKind.duplicate_therapy,
                    theirs.prescription_id,
                    rec.AlertSeverity.moderate,
                    f"Duplicate therapy: {label} {why}.",
                    prescription_id=theirs.prescription_id,
                )
            )
        effects: list[str] = []
        high = False
        for pair in knowledge.data.interactions:
            if (_has(drug, pair.a) and _has(other.drug, pair.b)) or (
                _has(drug, pair.b) and _has(other.drug, pair.a)
            ):
                effects.append(pair.effect)
                high = high or pair.severity == "high"
        if effects:
            alerts.append(
                _alert(
                    rec.AlertKind.interaction,
                    theirs.prescription_id,
                    rec.AlertSeverity.high if high else rec.AlertSeverity.moderate,
                    f"Interaction with {label}: {'; '.join(dict.fromkeys(effects))}.",
                    prescription_id=theirs.prescription_id,
                )
            )
    return alerts


def _has(drug: Drug, name: str) -> bool:
    return name in drug.ingredients or name in drug.classes


def check(
    knowledge: Knowledge,
    medication: rec.Medication,
    drug: Drug,
    allergies: Sequence[rec.AllergyEntry],
    active: Sequence[Active],
    unverified: Sequence[str] = (),
) -> list[rec.SafetyAlert]:
    """Every alert for prescribing `medication` (made of `drug`), sorted by code."""
    alerts = allergy_alerts(knowledge, medication, drug, allergies)
    alerts += therapy_alerts(knowledge, medication, drug, active)
    if drug.unresolved or not drug.ingredients:
        alerts.append(
            _alert(
                rec.AlertKind.unchecked,
                "drug",
                rec.AlertSeverity.moderate,
                f"{medication.drug_name} is not in the drug vocabulary: allergies, duplicate "
                "therapy and interactions could not be fully checked.",
            )
        )
    if unverified:
        alerts.append(
            _alert(
                rec.AlertKind.unchecked,
                "integrity",
                rec.AlertSeverity.high,
                f"{len(unverified)} of this patient's prescriptions fail their integrity check "
                "(edited outside Medihaven): duplicates and interactions with them could not "
                "be checked.",
            )
        )
    return sorted(alerts, key=lambda a: a.code)
