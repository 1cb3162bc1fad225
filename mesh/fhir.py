"""FHIR R4's envelope, written once: OperationOutcome, and searchset Bundles with paging
links (the resources themselves are mapped in `mesh.fhirmap`).

Links are made from the target URI the user signed, so a client follows `next` with a
request it signs itself, for exactly that page.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from contracts.fhir import FHIR_PREFIX
from mesh.fhirmap import instant

Resource = dict[str, Any]

ISSUE_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    409: "conflict",
    410: "deleted",
    413: "too-long",
    415: "not-supported",
    422: "processing",
    429: "throttled",
    500: "exception",
    503: "transient",
}
"""HTTP status -> OperationOutcome.issue.code (FHIR's IssueType)."""


def outcome(status: int, text: str, code: str | None = None) -> Resource:
    """An OperationOutcome for an HTTP error status, its text the plain sentence."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error" if status >= 400 else "information",
                "code": code
                or ISSUE_CODES.get(status, "exception" if status >= 500 else "invalid"),
                "diagnostics": text,
            }
        ],
    }


def base_url(target: str) -> str:
    """The FHIR base the client used: scheme and authority of the signed URI, then
    `/fhir/R4` (so fullUrls and links point where the client sent the request)."""
    parts = urlsplit(target)
    return urlunsplit((parts.scheme, parts.netloc, FHIR_PREFIX, "", ""))


def _with_offset(target: str, offset: int) -> str:
    parts = urlsplit(target)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "_offset"]
    if offset:
        query.append(("_offset", str(offset)))
    text = urlencode(query, quote_via=quote)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, text, ""))


@dataclass(frozen=True)
class Entry:
    resource: Resource
    mode: str = "match"
    """`match` (a search hit) or `include` (returned with one: a MedicationRequest's
    Provenance)."""


def _entry(base: str, item: Entry) -> Resource:
    r = item.resource
    return {
        "fullUrl": f"{base}/{r['resourceType']}/{r['id']}",
        "resource": r,
        "search": {"mode": item.mode},
    }


@dataclass(frozen=True)
class Hit:
    """One search match and the resources included with it (on the same page)."""

    resource: Resource
    included: tuple[Resource, ...] = ()


def searchset(
    target: str, hits: Sequence[Hit], *, offset: int, count: int, total: int | None = None
) -> Resource:
    """The page [offset, offset + count) of `hits` as a searchset Bundle: `total` is every
    match; links `self`, `first`, and `previous` / `next` where they exist (offset
    paging by `_offset`, every other parameter as the client signed it). With `total`,
    `hits` is that page already (a service that pages itself: the audit log)."""
    page = hits[offset : offset + count] if total is None else hits
    total = len(hits) if total is None else total
    links = [
        {"relation": "self", "url": target},
        {"relation": "first", "url": _with_offset(target, 0)},
    ]
    if offset > 0 and count > 0:
        links.append({"relation": "previous", "url": _with_offset(target, max(0, offset - count))})
    if count > 0 and offset + count < total:
        links.append({"relation": "next", "url": _with_offset(target, offset + count)})
    entries = [Entry(h.resource) for h in page]
    entries += [Entry(r, "include") for h in page for r in h.included]
    return collection(target, entries, "searchset", total=total, links=links)


def collection(
    target: str,
    entries: Sequence[Entry],
    kind: str,
    *,
    total: int | None = None,
    links: list[Resource] | None = None,
) -> Resource:
    """A Bundle of `kind` (searchset, or `$everything`'s searchset of one compartment)."""
    base = base_url(target)
    bundle: Resource = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": instant(datetime.now(UTC))},
        "type": kind,
    }
    if total is not None:
        bundle["total"] = total
    bundle["link"] = links or [{"relation": "self", "url": target}]
    items = [_entry(base, e) for e in entries]
    if items:
        bundle["entry"] = items
    return bundle
