"""mesh/errors.py: every error code survives the trip through a reply as its own class,
and only 'could not be asked' codes count as unreachable (fail closed as 503)."""

from __future__ import annotations

import pytest

from contracts.errors import HTTP_STATUS, ErrorCode, ErrorReply
from mesh import errors
from mesh.errors import RpcError, error_from_reply, invalid_field, unreachable

DETAILS: list[dict[str, object] | list[object] | None] = [None, {"slot": "a"}, [{"loc": ["x"]}]]


@pytest.mark.parametrize("code", list(ErrorCode))
@pytest.mark.parametrize("details", DETAILS)
def test_every_code_round_trips_through_the_wire_as_its_own_class(
    code: ErrorCode, details: dict[str, object] | list[object] | None
) -> None:
    sent = RpcError("why, in a sentence", code=code, details=details)
    wire = sent.to_reply().model_dump_json()
    received = error_from_reply(ErrorReply.model_validate_json(wire))
    assert type(received) is not RpcError, f"{code} has no class of its own"
    assert received.code is code
    assert received.message == "why, in a sentence"
    assert received.details == details
    # raised as its class, it replies with the same code
    assert type(received)("again").to_reply().code is code


def test_each_class_has_its_own_code() -> None:
    classes = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, RpcError)]
    codes = [cls.code for cls in classes if cls is not RpcError]
    assert sorted(codes) == sorted(ErrorCode)


def test_an_unknown_code_on_the_wire_is_refused_not_guessed() -> None:
    with pytest.raises(ValueError):
        ErrorReply.model_validate_json('{"code": "teapot", "message": "x"}')


@pytest.mark.parametrize("code", list(ErrorCode))
def test_only_a_callee_that_could_not_be_asked_is_unreachable(code: ErrorCode) -> None:
    expected = code in {ErrorCode.unavailable, ErrorCode.timeout, ErrorCode.no_route}
    assert unreachable(RpcError("x", code=code)) is expected
    if HTTP_STATUS[code] < 500:  # a refusal is never mistaken for an outage
        assert not unreachable(RpcError("x", code=code))


def test_invalid_field_names_the_field_as_pydantic_would() -> None:
    for loc in ("body.items.0", ["body", "items", "0"]):
        exc = invalid_field(loc, "too long", "string_too_long")
        assert exc.code is ErrorCode.validation
        assert exc.details == [
            {"loc": ["body", "items", "0"], "msg": "too long", "type": "string_too_long"}
        ]
