"""The drug vocabulary: ingredients, drug classes, cross-sensitivities and interactions.

Loaded once from `drug_knowledge.json` (SAMPLE DATA, not clinical advice: a clinic loads
its own from a licensed source, setting `MEDIHAVEN_DRUG_KNOWLEDGE`), checked as it loads: every
class an entry names exists, no name is both an ingredient and a class, and every
interaction names known entries. Codes are `ingredient:<name>` and `class:<name>`;
allergies are recorded against them, and the prescribing check (`safety`) works on them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts import records as rec
from mesh.context import CallContext, runtime_of

SHIPPED = Path(__file__).with_name("drug_knowledge.json")
INGREDIENT = "ingredient:"
CLASS = "class:"
_SEPARATORS = re.compile(r"\s*(?:/|\+|,|;|\band\b|\bwith\b)\s*")
_WORD = re.compile(r"[a-z0-9]+")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClassEntry(_Strict):
    title: str
    parents: tuple[str, ...] = ()
    allergy_group: bool = False
    """An allergy to one member means an allergy to every member."""
    duplicates: bool = False
    """Two active members at once is duplicate therapy."""
    cross_sensitive: tuple[str, ...] = ()
    """Classes an allergy to this one may cross-react with."""


class IngredientEntry(_Strict):
    classes: tuple[str, ...]
    synonyms: tuple[str, ...] = ()


class InteractionEntry(_Strict):
    a: str
    b: str
    severity: Literal["high", "moderate"]
    effect: str


class KnowledgeFile(_Strict):
    notice: str = Field(min_length=1)
    classes: dict[str, ClassEntry]
    ingredients: dict[str, IngredientEntry]
    interactions: tuple[InteractionEntry, ...]

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        both = set(self.classes) & set(self.ingredients)
        if both:
            raise ValueError(f"names both an ingredient and a class: {sorted(both)}")
        for name, entry in self.classes.items():
            for other in (*entry.parents, *entry.cross_sensitive):
                if other not in self.classes:
                    raise ValueError(f"class {name!r} names an unknown class {other!r}")
        for name, ingredient in self.ingredients.items():
            for cls in ingredient.classes:
                if cls not in self.classes:
                    raise ValueError(f"ingredient {name!r} names an unknown class {cls!r}")
        known = set(self.classes) | set(self.ingredients)
        for pair in self.interactions:
            for side in (pair.a, pair.b):
                if side not in known:
                    raise ValueError(f"an interaction names an unknown entry {side!r}")
        for name in known:
            if not re.fullmatch(rec.SUBSTANCE_CODE_PATTERN, CLASS + name):
                raise ValueError(f"{name!r} cannot be a vocabulary code")
        return self


def _fold(text: str) -> str:
    return " ".join(text.casefold().split())


@dataclass(frozen=True)
class Drug:
    """What one medication is made of, as far as the vocabulary knows."""

    ingredients: frozenset[str]
    classes: frozenset[str]
    unresolved: tuple[str, ...]
    """Parts of its name or ingredient text that are not in the vocabulary."""

    @property
    def codes(self) -> frozenset[str]:
        return frozenset(
            {INGREDIENT + i for i in self.ingredients} | {CLASS + c for c in self.classes}
        )


class Knowledge:
    def __init__(self, data: KnowledgeFile) -> None:
        self.data = data
        names: dict[str, str] = {}
        for name, ingredient in data.ingredients.items():
            for alias in (name, *ingredient.synonyms):
                names.setdefault(_fold(alias), INGREDIENT + name)
        for name, entry in data.classes.items():
            for alias in (name, entry.title, name.replace("-", " ")):
                names.setdefault(_fold(alias), CLASS + name)
        self._names = names

    @property
    def notice(self) -> str:
        return self.data.notice

    def ancestors(self, cls: str) -> frozenset[str]:
        """A class with every class above it."""
        found: set[str] = set()
        stack = [cls]
        while stack:
            current = stack.pop()
            if current in found:
                continue
            found.add(current)
            stack.extend(self.data.classes[current].parents)
        return frozenset(found)

    def classes_of(self, ingredient: str) -> frozenset[str]:
        out: set[str] = set()
        for cls in self.data.ingredients[ingredient].classes:
            out |= self.ancestors(cls)
        return frozenset(out)

    def resolve(self, text: str) -> str | None:
        """The code a name, synonym or class title stands for (any case), if any."""
        folded = _fold(text)
        code = self._names.get(folded)
        if code is None and folded.endswith("s"):
            code = self._names.get(folded[:-1])
        return code

    def known(self, code: str) -> bool:
        if code.startswith(INGREDIENT):
            return code.removeprefix(INGREDIENT) in self.data.ingredients
        return code.startswith(CLASS) and code.removeprefix(CLASS) in self.data.classes

    def drug(self, text: str) -> Drug:
        """The ingredients (and their classes) of an ingredient text such as
        `amoxicillin/clavulanic acid`, or of a free-text drug name (`Amoxicillin 500mg`:
        each part is tried whole, then word by word)."""
        ingredients: set[str] = set()
        unresolved: list[str] = []
        for part in filter(None, _SEPARATORS.split(text.casefold())):
            code = self.resolve(part)
            if code is None:
                words = _WORD.findall(part)
                spans = [" ".join(words[i:j]) for i in range(len(words)) for j in (i + 2, i + 1)]
                hits = {self.resolve(w) for w in spans if w} - {None}
                found = {c for c in hits if c and c.startswith(INGREDIENT)}
                if not found:
                    unresolved.append(part)
                ingredients |= {c.removeprefix(INGREDIENT) for c in found}
                continue
            if code.startswith(INGREDIENT):
                ingredients.add(code.removeprefix(INGREDIENT))
            else:
                unresolved.append(part)  # a class is not a drug one can prescribe
        classes: set[str] = set()
        for ingredient in ingredients:
            classes |= self.classes_of(ingredient)
        return Drug(frozenset(ingredients), frozenset(classes), tuple(unresolved))

    def title(self, code: str) -> str:
        if code.startswith(CLASS):
            return self.data.classes[code.removeprefix(CLASS)].title
        return code.removeprefix(INGREDIENT)

    def search(self, prefix: str, limit: int) -> list[rec.Substance]:
        """Entries any word of whose name, synonyms or title starts with `prefix`
        (several words: each must start a word), ingredients and classes alike."""
        wanted = _WORD.findall(prefix.casefold())
        out: list[rec.Substance] = []
        for code in self._codes():
            words = set(_WORD.findall(" ".join(self._aliases(code)).casefold()))
            if wanted and all(any(w.startswith(p) for w in words) for p in wanted):
                out.append(self.substance(code))
        out.sort(key=lambda s: (not s.name.startswith(wanted[0]) if wanted else 0, s.name))
        return out[:limit]

    def substance(self, code: str) -> rec.Substance:
        if code.startswith(CLASS):
            name = code.removeprefix(CLASS)
            return rec.Substance(
                code=code,
                kind=rec.SubstanceKind.drug_class,
                name=name,
                title=self.data.classes[name].title,
            )
        name = code.removeprefix(INGREDIENT)
        return rec.Substance(
            code=code,
            kind=rec.SubstanceKind.ingredient,
            name=name,
            title=name,
            classes=sorted(self.data.ingredients[name].classes),
        )

    def _codes(self) -> list[str]:
        return [INGREDIENT + n for n in self.data.ingredients] + [
            CLASS + n for n in self.data.classes
        ]

    def _aliases(self, code: str) -> tuple[str, ...]:
        name = code.split(":", 1)[1]
        if code.startswith(CLASS):
            return (name.replace("-", " "), self.data.classes[name].title)
        return (name, *self.data.ingredients[name].synonyms)


@cache
def load(path: Path = SHIPPED) -> Knowledge:
    return Knowledge(KnowledgeFile.model_validate_json(path.read_bytes()))


def of(ctx: CallContext) -> Knowledge:
    """The clinic's vocabulary (setting `drug_knowledge`), else the shipped sample."""
    return load(runtime_of(ctx).settings.drug_knowledge or SHIPPED)
