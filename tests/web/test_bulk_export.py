"""The administrators' Bulk export screen, in Debian's Chromium against the whole mesh as
real processes: one administrator requests an export sealed to a recipient's public key,
a second one approves it in their own browser and watches the progress advance while it
runs (records exports one patient a page, pausing between pages), then the manifest; a
file downloads sealed, and only the recipient's private key (here, never in a browser)
opens it, every line a valid FHIR resource. The requester cannot approve their own."""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from unittest.mock import patch

import pytest
from fhir.resources.R4B import get_fhir_model_class
from nacl.public import PrivateKey, SealedBox

from cli.sdk import MedihavenClient
from tests.gateway.support import Mesh
from tests.web.support import (
    CSP_PROBLEMS,
    axe_violations,
    browser_storage,
    chromium,
    new_page,
    register,
    require_browser,
    screenshot,
    tab,
    web_mesh,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

PATIENTS = 4
SLOW_EXPORT = {
    # Read by records (every service process inherits the test's environment): a page a
    # patient, a pause between pages, so the run lasts long enough to be watched.
    "MEDIHAVEN_FHIR_EXPORT_PAGE": "1",
    "MEDIHAVEN_FHIR_EXPORT_PAGE_DELAY_S": "1.5",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    require_browser()
    with (
        patch.dict(os.environ, SLOW_EXPORT),
        web_mesh("webexport", tmp_path_factory.mktemp("webexportlogs")) as mesh,
    ):
        yield mesh


@pytest.fixture(scope="module")
def admin(world: Mesh) -> MedihavenClient:
    """An administrator for the setup (before Playwright starts: bootstrapping runs its own
    event loop), and the patients to export."""
    client = world.admin().client
    desk = world.staff("receptionist").client
    for n in range(PATIENTS):
        desk.post(
            "/api/v1/patients",
            {
                "demographics": {
                    "given_name": "Lena",
                    "family_name": f"Exportova{n}",
                    "date_of_birth": f"1975-02-{n + 1:02d}",
                    "sex": "female",
                }
            },
        )
    return client


@pytest.fixture(scope="module")
def browser(admin: MedihavenClient) -> Iterator[Browser]:
    from playwright.sync_api import expect

    expect.set_options(timeout=20_000)  # two cores shared by many
    with chromium() as launched:
        yield launched
    expect.set_options(timeout=5_000)


@pytest.fixture(scope="module")
def contexts() -> list[BrowserContext]:
    return []


def _administrator(
    world: Mesh, admin: MedihavenClient, browser: Browser, contexts: list[BrowserContext], name: str
) -> Page:
    page = new_page(contexts, browser, accept_downloads=True)
    token = str(admin.post("/api/v1/tokens", {"role": "administrator"})["token"])
    register(page, world.url, token, f"{name.lower()}-export", f"{name} Admin")
    tab(page, "Bulk export")
    return page


def test_two_administrators_export_and_watch_the_progress_then_the_manifest(
    world: Mesh,
    admin: MedihavenClient,
    browser: Browser,
    contexts: list[BrowserContext],
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    first = _administrator(world, admin, browser, contexts, "Ada")
    second = _administrator(world, admin, browser, contexts, "Bea")
    key = PrivateKey.generate()  # the recipient's: never in a browser

    first.get_by_label("Recipient public key (X25519, base64)").fill(
        base64.b64encode(bytes(key.public_key)).decode()
    )
    first.get_by_role("button", name="Request export").click()
    job = first.get_by_test_id("export-job")
    expect(job).to_have_text(re.compile(r"^[0-9a-f]{64}$"))
    job_id = job.inner_text()
    expect(first.get_by_test_id("export-progress")).to_contain_text("approval")

    # The requester cannot approve it.
    first.get_by_label("Job id to approve").fill(job_id)
    first.get_by_role("button", name="Approve export").click()
    expect(first.get_by_role("alert")).to_contain_text("second administrator")

    second.get_by_label("Job id to approve").fill(job_id)
    second.get_by_role("button", name="Approve export").click()
    progress = second.get_by_test_id("export-progress")
    # It advances while it runs: a page is one patient, 1.5 s apart.
    expect(progress).to_contain_text(re.compile(rf"[1-{PATIENTS - 1}] of {PATIENTS} patients"))
    expect(second.get_by_role("group", name="Export progress").locator("progress")).to_be_visible()
    progress.scroll_into_view_if_needed()
    screenshot(second, "bulk-export-progress", top=False)

    manifest = second.get_by_role("region", name="Export manifest")
    expect(manifest).to_be_visible(timeout=60_000)
    expect(manifest).to_contain_text("by Ada Admin (administrator), approved by Bea Admin")
    files = manifest.get_by_role("table", name="Exported files")
    expect(
        files.get_by_role("row", name=re.compile(rf"^Patient {PATIENTS} {PATIENTS}$"))
    ).to_be_visible()
    manifest.scroll_into_view_if_needed()
    screenshot(second, "bulk-export-manifest", top=False)

    # The requester's screen follows the same job to the manifest.
    expect(first.get_by_role("region", name="Export manifest")).to_be_visible(timeout=30_000)
    with first.expect_download() as download:
        first.get_by_role("button", name="Download Patient-1.ndjson.sealed").click()
    sealed = tmp_path / "Patient-1.ndjson.sealed"
    download.value.save_as(sealed)
    lines = SealedBox(key).decrypt(sealed.read_bytes()).decode().splitlines()
    (patient,) = [json.loads(line) for line in lines]
    get_fhir_model_class("Patient").model_validate(patient)
    assert patient["name"][0]["family"].startswith("Exportova")

    for page in (first, second):
        assert axe_violations(page) == []


def test_no_browser_kept_patient_data_and_the_csp_held(contexts: list[BrowserContext]) -> None:
    for context in contexts:
        for page in context.pages:
            assert "Exportova" not in page.content()
            assert "Exportova" not in browser_storage(page)
    assert CSP_PROBLEMS == []
