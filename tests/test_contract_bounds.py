"""Every value a user can send is bounded in its contract, in one place per route.

Walks the request model of every method with an HTTP route (and every model nested in
it): each string has a maximum length (or a pattern), each number a lower and an upper
bound, each list and map a maximum size. The gateway and every service validate with
these models (`contracts.http.build_request`), so a value beyond them is a 422 naming
the field, never a 500 from deeper down (a MariaDB error on a 30-digit offset, say).
"""

from __future__ import annotations

import types
import typing
from typing import Any, get_args, get_origin

import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from contracts.common import collect

ROUTED = [m for m in collect()[0] if m.route is not None]


def _constraints(info: FieldInfo | None) -> set[str]:
    found: set[str] = set()
    for item in info.metadata if info is not None else ():
        for name in ("max_length", "le", "lt", "ge", "gt", "pattern"):
            if getattr(item, name, None) is not None:
                found.add(name)
    return found


def unbounded(model: type[BaseModel], where: str = "") -> list[str]:
    problems: list[str] = []
    seen: set[type[BaseModel]] = set()

    def walk(model: type[BaseModel], where: str) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, info in model.model_fields.items():
            check(info.annotation, info, f"{where}{name}")

    def check(annotation: Any, info: FieldInfo | None, where: str) -> None:
        origin = get_origin(annotation)
        if origin in (typing.Union, types.UnionType):
            for arg in get_args(annotation):
                if arg is not type(None):
                    check(arg, info, where)
            return
        if origin is typing.Annotated:
            check(get_args(annotation)[0], FieldInfo.from_annotation(annotation), where)
            return
        have = _constraints(info)
        if annotation is str and not {"max_length", "pattern"} & have:
            problems.append(f"{where}: a string without a maximum length")
        elif annotation in (int, float) and not ({"le", "lt"} & have and {"ge", "gt"} & have):
            problems.append(f"{where}: a number without both bounds")
        elif origin in (list, tuple, set, frozenset, dict):
            if "max_length" not in have:
                problems.append(f"{where}: a collection without a maximum size")
            for arg in get_args(annotation):
                if arg is not Ellipsis:
                    check(arg, None, f"{where}[]")
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            walk(annotation, f"{where}.")

    walk(model, where)
    return problems


@pytest.mark.parametrize("method", ROUTED, ids=[m.name for m in ROUTED])
def test_every_value_of_a_routed_request_is_bounded(method: Any) -> None:
    assert unbounded(method.request, f"{method.name}: ") == []


def test_the_walk_finds_an_unbounded_value() -> None:
    class Loose(BaseModel):
        text: str
        count: int
        items: list[int]

    assert len(unbounded(Loose)) == 4  # text, count, items, each item
