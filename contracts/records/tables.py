"""The keyvault tables and columns of records' data, and what a search may decrypt of them."""

from __future__ import annotations

PATIENTS_TABLE = "patients"
ENCOUNTERS_TABLE = "encounter_versions"
PRESCRIPTIONS_TABLE = "prescriptions"
ALLERGIES_TABLE = "allergy_lists"
BREAK_GLASS_TABLE = "break_glass"
BRIEF_COLUMNS = frozenset({"mrn", "identity"})
"""What a list or search decrypts of a patient: name, birth date, sex and record number."""
PATIENT_FIELDS_AT: tuple[tuple[str, str, str | None], ...] = (
    ("family_name", "identity", "family_name"),
    ("family_sound", "identity", "family_name"),
    ("given_sound", "identity", "given_name"),
    ("given_name", "identity", "given_name"),
    ("date_of_birth", "identity", "date_of_birth"),
    ("phone", "contact", "phone"),
    ("mrn", "mrn", None),
)
"""Where each searchable value is in a patient row's plaintext (column, JSON key), so the
keyvault can check that what it decrypts for a search matches the signed search."""
SEARCH_LIMIT = 50
DUPLICATES_SHOWN = 5
MRN_CANDIDATES = 5
"""Record numbers a registration draws at once (40 random bits each; a clash is rare)."""
DEMOGRAPHIC_TERMS = (
    ("family_name", "demographics.family_name"),
    ("given_name", "demographics.given_name"),
    ("date_of_birth", "demographics.date_of_birth"),
    ("phone", "demographics.phone"),
    ("family_sound", "demographics.family_name"),
    ("family_sound_alt", "demographics.family_name"),
)
SIMILAR_TERMS = (
    ("family_sound", "demographics.family_name"),
    ("given_sound", "demographics.given_name"),
    ("date_of_birth", "demographics.date_of_birth"),
)
"""A possible duplicate: family and given names that sound alike (Double Metaphone) and
the same birth date (twins of other names are not flagged)."""
CHART = frozenset({PATIENTS_TABLE, ENCOUNTERS_TABLE, PRESCRIPTIONS_TABLE, ALLERGIES_TABLE})
ALLERGY_COLUMN = "allergies"
"""The column of an allergy list, and of an encounter version, that holds allergies."""
ALLERGY_SOURCES = frozenset({ALLERGIES_TABLE, ENCOUNTERS_TABLE})
"""An allergy list, or (once per patient, before the list exists) the encounters it is
built from."""
