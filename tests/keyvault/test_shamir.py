"""Shamir's Secret Sharing of the root key: reconstruction, refusals, share text format."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import itertools
import secrets
import string

import pytest
from Crypto.Protocol.SecretSharing import Shamir
from hypothesis import given, settings
from hypothesis import strategies as st

from services.keyvault.ciphers import check_root_key, make_check_value
from services.keyvault.shamir import (
    MAX_SHARES,
    SHARE_PREFIX,
    Share,
    ShareCombineError,
    ShareFormatError,
    combine_shares,
    format_share,
    parse_share,
    split_root_key,
)

SET_ID = bytes.fromhex("a1b2c3d4")
OTHER_SET = bytes.fromhex("00000001")


@pytest.fixture(scope="module")
def root_key() -> bytes:
    return secrets.token_bytes(32)


@pytest.fixture(scope="module")
def shares_3_of_5(root_key: bytes) -> list[Share]:
    return [parse_share(text) for text in split_root_key(root_key, 3, 5, SET_ID)]


# --------------------------------------------------------------------------- reconstruction


def test_every_3_subset_of_5_reconstructs(root_key: bytes, shares_3_of_5: list[Share]) -> None:
    subsets = list(itertools.combinations(shares_3_of_5, 3))
    assert len(subsets) == 10
    for subset in subsets:
        for order in itertools.permutations(subset):
            assert combine_shares(order) == root_key


def test_more_than_k_shares_reconstruct(root_key: bytes, shares_3_of_5: list[Share]) -> None:
    for size in (4, 5):
        for subset in itertools.combinations(shares_3_of_5, size):
            assert combine_shares(subset) == root_key


def test_combine_returns_a_wipeable_bytearray(shares_3_of_5: list[Share]) -> None:
    key = combine_shares(shares_3_of_5[:3])
    assert type(key) is bytearray and len(key) == 32


def test_shares_are_numbered_one_to_n(root_key: bytes) -> None:
    shares = [parse_share(t) for t in split_root_key(root_key, 2, 7, SET_ID)]
    assert [s.index for s in shares] == list(range(1, 8))
    assert {s.k for s in shares} == {2}
    assert {s.set_id for s in shares} == {SET_ID}


def test_the_two_halves_use_independent_polynomials(root_key: bytes) -> None:
    # Same key in both halves: identical polynomials would give identical share halves.
    doubled = root_key[:16] * 2
    shares = [parse_share(t) for t in split_root_key(doubled, 3, 5, SET_ID)]
    assert all(s.value[:16] != s.value[16:] for s in shares)
    assert combine_shares(shares[2:]) == doubled


def test_splitting_twice_gives_different_shares(root_key: bytes) -> None:
    first = split_root_key(root_key, 3, 5, SET_ID)
    second = split_root_key(root_key, 3, 5, SET_ID)
    assert set(first).isdisjoint(second)


def test_the_largest_share_count_works(root_key: bytes) -> None:
    texts = split_root_key(root_key, 2, MAX_SHARES, SET_ID)
    shares = [parse_share(t) for t in texts]
    assert shares[-1].index == 255
    assert combine_shares([shares[0], shares[-1]]) == root_key


@settings(max_examples=40, deadline=None)
@given(data=st.data(), n=st.integers(2, 10))
def test_any_k_of_n_reconstruct(data: st.DataObject, n: int) -> None:
    k = data.draw(st.integers(2, n), label="k")
    key = data.draw(st.binary(min_size=32, max_size=32), label="key")
    shares = [parse_share(t) for t in split_root_key(key, k, n, SET_ID)]
    chosen = data.draw(st.permutations(shares), label="order")[:k]
    assert combine_shares(chosen) == key


@settings(max_examples=40, deadline=None)
@given(data=st.data(), n=st.integers(2, 10))
def test_fewer_than_k_shares_do_not_reconstruct(data: st.DataObject, n: int) -> None:
    k = data.draw(st.integers(2, n), label="k")
    key = secrets.token_bytes(32)
    shares = [parse_share(t) for t in split_root_key(key, k, n, SET_ID)]
    chosen = data.draw(st.permutations(shares), label="order")[: k - 1]
    with pytest.raises(ShareCombineError, match=f"{k} shares are needed"):
        combine_shares(chosen)
    # Even interpolating the k-1 shares anyway (as if k were lower) gives a wrong key.
    if k - 1 >= 2:
        lowered = [dataclasses.replace(s, k=k - 1) for s in chosen]
        assert combine_shares(lowered) != key
    else:
        (share,) = chosen
        halves = [Shamir.combine([(share.index, share.value[i : i + 16])]) for i in (0, 16)]
        assert halves[0] + halves[1] != key


# --------------------------------------------------------------------------- combine refusals


def test_duplicate_share_refused(shares_3_of_5: list[Share]) -> None:
    a, b, _c, _d, _e = shares_3_of_5
    with pytest.raises(ShareCombineError, match="more than once"):
        combine_shares([a, b, a])
    forged = dataclasses.replace(b, value=bytes(32))  # same index, different value
    with pytest.raises(ShareCombineError, match="more than once"):
        combine_shares([a, b, forged])


def test_no_shares_refused() -> None:
    with pytest.raises(ShareCombineError, match="no shares"):
        combine_shares([])


def test_shares_from_another_initialisation_refused(
    root_key: bytes, shares_3_of_5: list[Share]
) -> None:
    other = [parse_share(t) for t in split_root_key(root_key, 3, 5, OTHER_SET)]
    with pytest.raises(ShareCombineError, match="different initialisations"):
        combine_shares([shares_3_of_5[0], shares_3_of_5[1], other[2]])
    with pytest.raises(ShareCombineError, match="another initialisation"):
        combine_shares(other[:3], set_id=SET_ID)
    assert combine_shares(shares_3_of_5[:3], set_id=SET_ID) == root_key


def test_share_of_another_set_refused_at_parse(root_key: bytes) -> None:
    text = split_root_key(root_key, 3, 5, OTHER_SET)[0]
    with pytest.raises(ShareFormatError, match="another initialisation"):
        parse_share(text, set_id=SET_ID)
    assert parse_share(text, set_id=OTHER_SET).set_id == OTHER_SET


def test_shares_disagreeing_on_threshold_refused(shares_3_of_5: list[Share]) -> None:
    a, b, c, _d, _e = shares_3_of_5
    with pytest.raises(ShareCombineError, match="threshold"):
        combine_shares([a, b, dataclasses.replace(c, k=2)])


def test_only_parsed_shares_combine(shares_3_of_5: list[Share]) -> None:
    with pytest.raises(ShareCombineError, match="parsed"):
        combine_shares([shares_3_of_5[0], "mhs1-xyz", shares_3_of_5[2]])  # type: ignore[list-item]


def test_a_wrong_share_is_caught_by_the_check_value(
    root_key: bytes, shares_3_of_5: list[Share]
) -> None:
    """Interpolation cannot tell a wrong share; the check value does."""
    check = make_check_value(root_key)
    a, b, c, _d, _e = shares_3_of_5
    tampered = dataclasses.replace(c, value=bytes(x ^ 1 for x in c.value))
    # Re-encoded with a fresh checksum, so the text format does not catch it either.
    wrong = combine_shares([a, b, parse_share(format_share(tampered))])
    assert wrong != root_key
    assert not check_root_key(wrong, check)
    assert check_root_key(combine_shares([a, b, c]), check)


# --------------------------------------------------------------------------- split bounds


@pytest.mark.parametrize(
    ("k", "n", "message"),
    [
        (1, 5, "too small"),
        (0, 5, "too small"),
        (-3, 5, "too small"),
        (6, 5, "exceeds"),
        (2, 256, "too many"),
        (3, 1000, "too many"),
    ],
)
def test_split_bounds(root_key: bytes, k: int, n: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_root_key(root_key, k, n, SET_ID)


@pytest.mark.parametrize("bad", [True, 2.0, "3"])
def test_split_needs_integer_bounds(root_key: bytes, bad: object) -> None:
    with pytest.raises(ValueError, match="integers"):
        split_root_key(root_key, bad, 5, SET_ID)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", [b"", bytes(16), bytes(31), bytes(33), "x" * 32])
def test_split_needs_a_32_byte_key(key: bytes) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        split_root_key(key, 3, 5, SET_ID)


@pytest.mark.parametrize("set_id", [b"", b"abc", b"abcde", "abcd"])
def test_split_needs_a_4_byte_set_id(root_key: bytes, set_id: bytes) -> None:
    with pytest.raises(ValueError, match="set id"):
        split_root_key(root_key, 3, 5, set_id)


def test_split_accepts_a_bytearray_key(root_key: bytes) -> None:
    shares = [parse_share(t) for t in split_root_key(bytearray(root_key), 2, 2, SET_ID)]
    assert combine_shares(shares) == root_key


# --------------------------------------------------------------------------- share text


def test_share_text_layout(root_key: bytes) -> None:
    text = split_root_key(root_key, 3, 5, SET_ID)[1]
    assert text.startswith(SHARE_PREFIX)
    assert len(text) == len(SHARE_PREFIX) + 58  # 43 bytes, unpadded base64url
    assert set(text[len(SHARE_PREFIX) :]) <= set(string.ascii_letters + string.digits + "-_")
    share = parse_share(text)
    assert (share.version, share.k, share.index, share.set_id) == (1, 3, 2, SET_ID)
    assert format_share(share) == text


def test_share_repr_hides_its_value(shares_3_of_5: list[Share]) -> None:
    share = shares_3_of_5[0]
    for shown in (repr(share), str(share), f"{share}"):
        assert share.value.hex() not in shown
        assert repr(share.value) not in shown
        assert "value" not in shown


def test_whitespace_and_line_wraps_are_ignored(root_key: bytes) -> None:
    text = split_root_key(root_key, 3, 5, SET_ID)[0]
    wrapped = f"  {text[:20]}\n{text[20:40]} \t{text[40:]}\r\n"
    assert parse_share(wrapped) == parse_share(text)


def test_every_single_character_typo_is_caught(root_key: bytes) -> None:
    text = split_root_key(root_key, 3, 5, SET_ID)[0]
    alphabet = string.ascii_letters + string.digits + "-_"
    for position in range(len(text)):
        for replacement in alphabet[position % 7 :: 7]:  # ~9 substitutions per position
            if replacement == text[position]:
                continue
            typo = text[:position] + replacement + text[position + 1 :]
            with pytest.raises(ShareFormatError):
                parse_share(typo)


def test_swapped_neighbours_are_caught(root_key: bytes) -> None:
    text = split_root_key(root_key, 3, 5, SET_ID)[0]
    for i in range(len(SHARE_PREFIX), len(text) - 1):
        if text[i] == text[i + 1]:
            continue
        swapped = text[:i] + text[i + 1] + text[i] + text[i + 2 :]
        with pytest.raises(ShareFormatError):
            parse_share(swapped)


def test_corrupt_share_says_checksum(root_key: bytes) -> None:
    text = split_root_key(root_key, 3, 5, SET_ID)[0]
    middle = len(text) // 2
    typo = text[:middle] + ("A" if text[middle] != "A" else "B") + text[middle + 1 :]
    with pytest.raises(ShareFormatError, match="corrupt") as caught:
        parse_share(typo)
    assert "typo" in caught.value.reason
    assert text[len(SHARE_PREFIX) :] not in str(caught.value)


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda t: t[len(SHARE_PREFIX) :], "must start with"),
        (lambda t: "mhs2-" + t[len(SHARE_PREFIX) :], "must start with"),
        (lambda t: t.upper(), "must start with"),
        (lambda t: t[:-1], "wrong length"),
        (lambda t: t + "A", "wrong length"),
        (lambda t: t + t, "wrong length"),
        (lambda t: t[:-2] + "==", "base64url"),
        (lambda t: t[:-1] + "é", "base64url"),
        (lambda t: t[:-1] + "+", "base64url"),
        (lambda t: "", "must start with"),
    ],
    ids=[
        "no-prefix",
        "other-prefix",
        "upper-cased",
        "truncated",
        "extra-char",
        "pasted-twice",
        "padding",
        "non-ascii",
        "std-base64",
        "empty",
    ],
)
def test_malformed_shares_refused(root_key: bytes, mangle: object, reason: str) -> None:
    text = split_root_key(root_key, 3, 5, SET_ID)[0]
    with pytest.raises(ShareFormatError, match=reason):
        parse_share(mangle(text))  # type: ignore[operator]


def test_non_canonical_trailing_bits_refused(root_key: bytes) -> None:
    text = split_root_key(root_key, 3, 5, SET_ID)[0]
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    last = alphabet.index(text[-1])
    # 43 bytes in 58 characters: the last character carries 2 data bits and 4 padding bits.
    twin = text[:-1] + alphabet[last ^ 1]
    with pytest.raises(ShareFormatError, match="non-canonical"):
        parse_share(twin)


def _forge(body: bytes) -> str:
    """A share text with a valid checksum around an arbitrary 39-byte body."""
    checksum = hashlib.sha256(b"medihaven.shamir-share.v1" + body).digest()[:4]
    return SHARE_PREFIX + base64.urlsafe_b64encode(body + checksum).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("version", "k", "index", "reason"),
    [
        (2, 3, 1, "unsupported share version"),
        (0, 3, 1, "unsupported share version"),
        (1, 1, 1, "threshold 1"),
        (1, 0, 1, "threshold 0"),
        (1, 3, 0, "index 0"),
    ],
)
def test_well_checksummed_but_invalid_fields_refused(
    version: int, k: int, index: int, reason: str
) -> None:
    text = _forge(bytes([version, k, index]) + SET_ID + bytes(32))
    with pytest.raises(ShareFormatError, match=reason):
        parse_share(text)


def test_forge_helper_matches_the_format(shares_3_of_5: list[Share]) -> None:
    s = shares_3_of_5[0]
    assert _forge(bytes([s.version, s.k, s.index]) + s.set_id + s.value) == format_share(s)


@pytest.mark.parametrize("garbage", [None, 42, b"mhs1-abc", ["mhs1-"], 3.5])
def test_non_text_refused(garbage: object) -> None:
    with pytest.raises(ShareFormatError, match="must be text"):
        parse_share(garbage)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(
    st.text()
    | st.text(alphabet=string.ascii_letters + string.digits + "-_").map(lambda s: SHARE_PREFIX + s)
)
def test_garbage_never_crashes_the_parser(text: str) -> None:
    with pytest.raises(ShareFormatError):
        parse_share(text)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=43, max_size=43))
def test_random_bytes_of_the_right_length_are_refused(raw: bytes) -> None:
    text = SHARE_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    with pytest.raises(ShareFormatError, match="corrupt"):
        parse_share(text)


def test_direct_share_construction_is_validated() -> None:
    with pytest.raises(ShareFormatError, match="set id"):
        Share(1, 3, 1, b"abc", bytes(32))
    with pytest.raises(ShareFormatError, match="share value"):
        Share(1, 3, 1, SET_ID, bytes(31))
    with pytest.raises(ShareFormatError, match="index 256"):
        Share(1, 3, 256, SET_ID, bytes(32))
