"""The FHIR envelope's paging (pure logic: `mesh.fhir.searchset`)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from mesh.fhir import Hit, outcome, searchset

TARGET = "https://clinic.example/fhir/R4/Observation?patient=p1&_count=3"


def hits(n: int) -> list[Hit]:
    return [Hit({"resourceType": "Observation", "id": f"o{i}"}) for i in range(n)]


def links(bundle: dict[str, object]) -> dict[str, dict[str, list[str]]]:
    found = bundle["link"]
    assert isinstance(found, list)
    return {link["relation"]: parse_qs(urlsplit(link["url"]).query) for link in found}


def test_pages_and_their_links() -> None:
    first = searchset(TARGET, hits(8), offset=0, count=3)
    assert first["total"] == 8 and [e["resource"]["id"] for e in first["entry"]] == [
        "o0",
        "o1",
        "o2",
    ]
    assert set(links(first)) == {"self", "first", "next"}
    assert links(first)["next"] == {"patient": ["p1"], "_count": ["3"], "_offset": ["3"]}
    last = searchset(TARGET + "&_offset=6", hits(8), offset=6, count=3)
    assert [e["resource"]["id"] for e in last["entry"]] == ["o6", "o7"]
    assert set(links(last)) == {"self", "first", "previous"}
    assert links(last)["previous"]["_offset"] == ["3"]
    assert "_offset" not in links(last)["first"]
    assert first["entry"][0]["fullUrl"] == "https://clinic.example/fhir/R4/Observation/o0"


def test_edges() -> None:
    beyond = searchset(TARGET, hits(2), offset=5, count=3)
    assert beyond["total"] == 2 and "entry" not in beyond
    assert set(links(beyond)) == {"self", "first", "previous"}
    counted = searchset(TARGET, hits(4), offset=0, count=0)
    assert counted["total"] == 4 and "entry" not in counted and "next" not in links(counted)
    paged = searchset(TARGET, hits(3), offset=3, count=3, total=10)  # a service that pages
    assert [e["resource"]["id"] for e in paged["entry"]] == ["o0", "o1", "o2"]
    assert paged["total"] == 10 and links(paged)["next"]["_offset"] == ["6"]
    included = searchset(
        TARGET,
        [Hit({"resourceType": "A", "id": "a"}, ({"resourceType": "B", "id": "b"},))],
        offset=0,
        count=3,
    )
    assert [e["search"]["mode"] for e in included["entry"]] == ["match", "include"]


def test_outcomes_name_the_issue_type() -> None:
    assert outcome(403, "no")["issue"] == [
        {"severity": "error", "code": "forbidden", "diagnostics": "no"}
    ]
    assert outcome(429, "slow")["issue"][0]["code"] == "throttled"
    assert outcome(502, "x")["issue"][0]["code"] == "exception"
    assert outcome(418, "x")["issue"][0]["code"] == "invalid"
