"""Phone numbers as the clinic writes them: read with the clinic's region (a number
without a country code is one of it) and stored in international format, so one number
reads the same whoever typed it (`030 1234567` is stored as `+49 30 1234567`). Search
tokens are made by the keyvault with the same rules (`ciphers.normalise("phone", …)`).
"""

from __future__ import annotations

import phonenumbers

from contracts import records as rec
from mesh.errors import RpcError, invalid_field


def international(value: str, region: str, loc: tuple[str, ...]) -> str:
    """`+49 30 1234567` for `030 1234567` in region DE; a 422 naming `loc` if it cannot be
    a phone number there."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_possible_number(number):
        raise _not_a_number(value, region, loc)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def _not_a_number(value: str, region: str, loc: tuple[str, ...]) -> RpcError:
    example = phonenumbers.example_number(region)
    shown = (
        phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
        if example is not None
        else "+49 30 1234567"
    )
    return invalid_field(
        loc,
        f"{value} is not a phone number that can be dialled: check the digits, or write it "
        f"with its country code (e.g. {shown})",
        "phone_number",
    )


def formatted(d: rec.Demographics, region: str) -> rec.Demographics:
    """The demographics with every phone number in international format."""
    update: dict[str, object] = {}
    if d.phone is not None:
        update["phone"] = international(d.phone, region, ("demographics", "phone"))
    if d.emergency_contact is not None:
        phone = international(
            d.emergency_contact.phone, region, ("demographics", "emergency_contact", "phone")
        )
        update["emergency_contact"] = d.emergency_contact.model_copy(update={"phone": phone})
    return d.model_copy(update=update) if update else d
