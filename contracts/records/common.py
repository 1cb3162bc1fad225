"""Values every records contract shares: roles, patterns, validated text, date and code types."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints

from contracts.base import Role

SERVICE = "records"

DESK = frozenset({Role.receptionist})
CLINICAL = frozenset({Role.physician})
PATIENT_READERS = frozenset({Role.receptionist, Role.physician})

UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
MRN_PREFIX = "MH-"
MRN_PATTERN = r"^MH-[A-Z2-7]{8}$"
MIN_BIRTH_DATE = date(1890, 1, 1)
CLOCK_SKEW = timedelta(minutes=5)
MAX_LONG_TEXT = 10_000
MAX_DIAGNOSES = 20
MAX_ALLERGIES = 50
MAX_VERSION = 10**9
MAX_LIST_ALLERGIES = 200
SUBSTANCE_CODE_PATTERN = r"^(ingredient|class):[a-z0-9][a-z0-9 ()/-]{0,79}$"
ALERT_CODE_PATTERN = r"^[a-z_]{3,30}:[a-z0-9][a-z0-9:. ()/-]{0,119}$"
MAX_ALERTS = 50
PRESCRIPTION_CONTEXT = "medihaven.prescription.v1"
"""Domain separation: the first member of every canonical prescription."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_ICD10 = re.compile(r"^([A-Z][0-9][0-9A-Z])\.?([0-9A-Z]{1,4})?$")
_PHONE = re.compile(r"^\+?[0-9 ().\-/]{4,30}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$")


def single_line(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("control characters (line breaks, tabs, …) are not allowed here")
    return value


def multiline(value: str) -> str:
    if _CONTROL_BUT_NEWLINE.search(value):
        raise ValueError("control characters other than line breaks are not allowed")
    return value


def _exact(value: str) -> str:
    """Signed text is taken as sent (no silent trimming that the signer did not see)."""
    if value != value.strip():
        raise ValueError("leading or trailing whitespace is not allowed in signed fields")
    return value


def _has_letter(value: str) -> str:
    if not any(c.isalpha() for c in value):
        raise ValueError("must contain a letter")
    return value


def _phone(value: str) -> str:
    if not _PHONE.fullmatch(value):
        raise ValueError("a phone number has digits, an optional leading +, and ( ) . - / spaces")
    digits = sum(c.isdigit() for c in value)
    if not 4 <= digits <= 15:
        raise ValueError("a phone number has 4 to 15 digits")
    return value


def _email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise ValueError("not an email address")
    return value


def _icd10(value: str) -> str:
    """ICD-10 / ICD-10-CM code: letter, two characters, optional dot and 1-4 more."""
    match = _ICD10.fullmatch(value.strip().upper())
    if match is None:
        raise ValueError("not an ICD-10 code (e.g. J45.9, E11.9, I10)")
    category, subcategory = match.groups()
    return f"{category}.{subcategory}" if subcategory else category


def _birth_date(value: date) -> date:
    if value < MIN_BIRTH_DATE:
        raise ValueError(f"date of birth before {MIN_BIRTH_DATE.isoformat()}")
    if value > (datetime.now(UTC) + timedelta(days=1)).date():
        raise ValueError("date of birth is in the future")
    return value


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _not_future(value: datetime) -> datetime:
    if value > datetime.now(UTC) + CLOCK_SKEW:
        raise ValueError("is in the future")
    if value.year < MIN_BIRTH_DATE.year:
        raise ValueError("is implausibly old")
    return value


Uuid = Annotated[str, Field(pattern=UUID_PATTERN, description="A lowercase UUID.")]
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timezone-aware datetime (naive ones are refused), normalised to UTC."""
PastDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc), AfterValidator(_not_future)]
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(single_line),
    AfterValidator(_has_letter),
]
ShortText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(single_line),
]
Reason = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=1000),
    AfterValidator(multiline),
]
LongText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=MAX_LONG_TEXT),
    AfterValidator(multiline),
]
Phone = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=40), AfterValidator(_phone)
]
Email = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=254), AfterValidator(_email)
]
BirthDate = Annotated[date, AfterValidator(_birth_date)]
Icd10Code = Annotated[
    str,
    StringConstraints(max_length=10),
    AfterValidator(_icd10),
    Field(examples=["J45.9", "E11.9", "I10"]),
]
MrnQuery = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=4, max_length=20, pattern=r"^[A-Za-z0-9 -]+$"
    ),
]
SignedText = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200),
    AfterValidator(single_line),
    AfterValidator(_exact),
]
SignedLongText = Annotated[
    str, StringConstraints(max_length=2000), AfterValidator(multiline), AfterValidator(_exact)
]
