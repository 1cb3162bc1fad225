"""The web app in a real browser (Debian's Chromium, headless, through Playwright) against
the whole mesh as real processes: one flow per role, live chat between two browsers,
auto-lock, moving the key to another browser, unsealing the keyvault from the browser,
and, at the end, that no browser kept any patient data.

Screenshots of each role's main screen (1280x800) are written to docs/screenshots/.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from cli import keys
from cli.sdk import ApiError, MedihavenClient
from cli.sdk import register as sdk_register
from contracts import auth
from tests.gateway.support import Mesh, Staff
from tests.web.support import (
    CSP_PROBLEMS,
    PASSPHRASE,
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

PATIENT_NAMES = ["Amara", "Okonkwo", "Jonas", "Becker", "Lena", "Fischer"]
ALL_WEEK = [
    {"weekday": d, "start": "00:00", "end": "24:00"}
    for d in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    require_browser()
    with web_mesh("web", tmp_path_factory.mktemp("weblogs")) as mesh:
        yield mesh


@pytest.fixture(scope="module")
def browser(world: Mesh) -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def contexts() -> list[BrowserContext]:
    """Every browser context the tests open, kept open for the final storage check."""
    return []


def sdk_staff(world: Mesh, role: str, display_name: str, specialty: str | None = None) -> Staff:
    """A colleague registered with the Python SDK (their key made here, not in a browser)."""
    admin = world.admin().client
    token = admin.post("/api/v1/tokens", {"role": role})["token"]
    key = keys.generate()
    account = sdk_register(
        world.url,
        key,
        token=token,
        username=f"{role[:4]}-{uuid.uuid4().hex[:6]}",
        display_name=display_name,
        public_key=keys.public_key_b64(key),
        specialty=specialty,
    )
    return Staff(MedihavenClient(world.url, str(account["account_id"]), key), account)


def token_for(world: Mesh, role: str) -> str:
    return str(world.admin().client.post("/api/v1/tokens", {"role": role})["token"])


@pytest.fixture(scope="module")
def admin_page(world: Mesh, browser: Browser, contexts: list[BrowserContext]) -> Page:
    """The first administrator: the operator's bootstrap token (over the bus, as
    `medihaven admin bootstrap` does), then registration in the browser."""
    from playwright.sync_api import expect

    def bootstrap() -> auth.IssuedToken:
        return world.bus(
            lambda rpc: rpc.call(
                auth.BOOTSTRAP, auth.BootstrapRequest(), idempotency_key=str(uuid.uuid4())
            )
        )

    # Playwright's sync API runs an event loop in this thread: the bus call gets its own.
    with ThreadPoolExecutor(1) as pool:
        issued = pool.submit(bootstrap).result()
    page = new_page(contexts, browser)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=world.url)
    register(page, world.url, issued.token, "ada", "Ada Lovelace")
    # A second administrator for the tests' own SDK calls, from a token issued in the app.
    page.get_by_label("Role").select_option("administrator")
    page.get_by_role("button", name="Issue token").click()
    token = page.get_by_test_id("issued-token").inner_text().strip()
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == token
    key = keys.generate()
    account = sdk_register(
        world.url,
        key,
        token=token,
        username="ops-admin",
        display_name="Ops Admin",
        public_key=keys.public_key_b64(key),
    )
    world._admin = Staff(MedihavenClient(world.url, str(account["account_id"]), key), account)
    page.get_by_role("button", name="Done").click()
    return page


def test_the_gateway_serves_the_app_with_strict_headers(world: Mesh) -> None:
    page = httpx.get(world.url + "/", timeout=10)
    assert page.status_code == 200 and '<div id="root">' in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    host = world.url.removeprefix("http://")
    assert f"connect-src 'self' ws://{host} wss://{host}" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert httpx.get(world.url + "/patients", timeout=10).text == page.text
    assert httpx.get(world.url + "/api/v1/nothing", timeout=10).status_code == 404


def test_administrator_bootstraps_issues_revokes_and_manages_staff(
    world: Mesh, admin_page: Page
) -> None:
    from playwright.sync_api import expect

    page = admin_page
    # issue a physician token, shown once, then revoke it: it no longer registers anyone
    page.get_by_label("Role").select_option("physician")
    page.get_by_label("Valid for (hours)").fill("24")
    page.get_by_role("button", name="Issue token").click()
    token = page.get_by_test_id("issued-token").inner_text().strip()
    token_id = page.get_by_test_id("issued-token-id").inner_text().strip()
    page.get_by_role("button", name="Done").click()
    expect(page.get_by_test_id("issued-token")).to_have_count(0)
    page.get_by_role("button", name=f"Revoke token {token_id}").click()
    expect(page.get_by_text(f"Token {token_id} revoked.")).to_be_visible()
    row = page.get_by_role("table", name="Registration tokens").locator("tr", has_text=token_id)
    expect(row.get_by_test_id("token-state")).to_have_text("revoked")
    key = keys.generate()
    with pytest.raises(ApiError):
        sdk_register(
            world.url,
            key,
            token=token,
            username="too-late",
            display_name="Too Late",
            public_key=keys.public_key_b64(key),
        )
    screenshot(page, "administrator")
    # a bad input is answered next to its field
    page.get_by_label("Valid for (hours)").fill("9999")
    page.get_by_label("Valid for (hours)").evaluate("e => e.removeAttribute('max')")
    page.get_by_role("button", name="Issue token").click()
    expect(page.locator(".field-error")).to_contain_text("720")
    page.get_by_label("Valid for (hours)").fill("72")

    # disable a colleague: refused at once; enable: back
    desk = sdk_staff(world, "receptionist", "Rita Desk")
    tab(page, "Staff")
    username = desk.account["username"]
    staff_row = page.locator(f'tr[data-username="{username}"]')
    staff_row.get_by_role("button", name=f"Disable {username}", exact=True).click()
    staff_row.get_by_role("button", name=f"Yes, disable {username}").click()  # asked first
    expect(staff_row.get_by_test_id("account-status")).to_have_text("disabled")
    refused = desk.client.request("GET", "/api/v1/me")
    assert refused.status_code == 401
    assert refused.json()["error"]["details"]["reason"] == "disabled"
    staff_row.get_by_role("button", name="Enable").click()
    expect(staff_row.get_by_test_id("account-status")).to_have_text("active")
    assert desk.client.get("/api/v1/me")["account_id"] == desk.account_id

    tab(page, "Keyvault")
    expect(page.get_by_test_id("vault-state").first).to_have_text("unsealed")
    tab(page, "Audit")
    expect(
        page.get_by_role("table", name="Audit entries").first.locator("tbody tr").first
    ).to_be_visible()
    page.get_by_role("button", name="Verify the hash chain").click()
    expect(page.get_by_text("The chain is intact")).to_be_visible()
    page.get_by_label("Outcome").select_option("refused")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.get_by_role("table", name="Audit entries").first).to_contain_text("refused")


def test_receptionist_registers_books_reschedules_and_cancels(
    world: Mesh, browser: Browser, contexts: list[BrowserContext]
) -> None:
    from playwright.sync_api import expect

    sdk_staff(world, "physician", "Dr. Meredith Grey", "Pulmonology")
    page = new_page(contexts, browser)
    register(page, world.url, token_for(world, "receptionist"), "rosa", "Rosa Reception")
    expect(page.get_by_role("heading", name="Register a patient")).to_be_visible()

    form = page.get_by_role("region", name="Register a patient")

    def fill_patient() -> None:
        form.get_by_label("Given name").fill("Amara")
        form.get_by_label("Family name").fill("Okonkwo")
        form.get_by_label("Date of birth").fill("1984-03-09")
        form.get_by_label("Sex").select_option("female")
        form.get_by_label("Phone").fill("+44 20 7946 0958")
        form.get_by_role("button", name="Register patient").click()

    # a wrong phone is named next to the field
    form.get_by_label("Given name").fill("Amara")
    form.get_by_label("Family name").fill("Okonkwo")
    form.get_by_label("Date of birth").fill("1984-03-09")
    form.get_by_label("Phone").fill("call me")
    form.get_by_role("button", name="Register patient").click()
    expect(form.locator(".field-error")).to_contain_text("phone number")
    fill_patient()
    expect(form.get_by_text("Registered Amara Okonkwo: record number MH-")).to_be_visible()
    fill_patient()
    warning = page.get_by_role("alert", name="Possible duplicate")
    expect(warning).to_contain_text("already registered")
    warning.get_by_role("button", name="Cancel").click()

    finder = page.get_by_role("region", name="Find a patient")
    finder.get_by_label("Family name").fill("okonkwo")
    finder.get_by_label("Date of birth").fill("1984-03-09")
    finder.get_by_role("button", name="Search").click()
    found = page.get_by_role("table", name="Patients found")
    expect(found.locator("tbody tr")).to_have_count(1)
    found.get_by_role("button", name="Demographics").click()
    expect(page.get_by_role("region", name="Demographics")).to_contain_text("+44 20 7946 0958")
    found.get_by_role("button", name="Book").click()

    # the working time (every day 08:00-20:00), then the calendar: book from the day grid
    expect(page.get_by_role("heading", name="Physicians' calendars")).to_be_visible()
    tab(page, "Working time")
    page.get_by_label("Physician").select_option(label="Dr. Meredith Grey (Pulmonology)")
    hours = page.get_by_role("region", name="Working hours")
    for day in ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"):
        hours.get_by_role("button", name=f"Add hours on {day}").click()
        hours.get_by_label(f"{day} from").fill("08:00")
        hours.get_by_label(f"{day} until").fill("20:00")
    hours.get_by_role("button", name="Save working hours").click()
    expect(hours.get_by_text("Working hours saved.")).to_be_visible()
    tab(page, "Calendar")
    expect(page.get_by_text("Patient: Amara Okonkwo")).to_be_visible()  # still chosen
    page.get_by_role("button", name="Next day").click()  # a whole day ahead
    slots = page.get_by_role("group", name=re.compile("^Free times on"))
    expect(slots.get_by_role("button").first).to_be_visible()

    def book(slot: int, reason: str) -> None:
        slots.get_by_role("button").nth(slot).click()
        page.get_by_label("Reason for visit").fill(reason)
        page.get_by_role("button", name="Book appointment").click()
        expect(page.get_by_text("Booked Amara Okonkwo with Dr. Meredith Grey")).to_be_visible()

    book(0, "Asthma review")
    week = page.get_by_role("grid", name="Week view")
    first = week.get_by_test_id("appointment").filter(has_text="Asthma review")
    expect(first).to_contain_text("Amara Okonkwo")
    first.get_by_role("button", name="Reschedule").click()
    expect(page.get_by_role("heading", name="Move the appointment of")).to_be_visible()
    before = first.inner_text()
    slots.get_by_role("button").nth(2).click()
    expect(page.get_by_text("Appointment moved to")).to_be_visible()
    expect(first).not_to_have_text(before)

    book(0, "Follow-up")
    second = week.get_by_test_id("appointment").filter(has_text="Follow-up")
    second.get_by_role("button", name="Cancel", exact=True).click()
    second.get_by_label("Reason for cancelling").fill("Patient called to cancel")
    second.get_by_role("button", name="Cancel appointment").click()
    expect(page.get_by_text("Appointment cancelled.")).to_be_visible()
    # it stays on the calendar, with its status and reason
    expect(second).to_contain_text("cancelled: Patient called to cancel")
    expect(week.locator('[data-testid="appointment"][data-status="booked"]')).to_have_count(1)
    screenshot(page, "receptionist")

    # a narrow window: nothing wider than the screen
    page.set_viewport_size({"width": 400, "height": 800})
    for name in ("Calendar", "Today", "Working time", "Patients"):
        tab(page, name)
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 1, (name, overflow)
    page.set_viewport_size({"width": 1280, "height": 800})


def test_physician_calendar_chart_encounter_and_e_prescription(
    world: Mesh, browser: Browser, contexts: list[BrowserContext], admin_page: Page
) -> None:
    from playwright.sync_api import expect

    admin = world.admin().client
    admin.post(
        "/api/v1/catalog/medicines",
        {
            "details": {
                "name": "Salbutamol",
                "active_ingredient": "salbutamol",
                "strength": "100 micrograms",
                "dosage_form": "inhaler",
                "route": "inhalation",
                "type": "bronchodilator",
                "default_instructions": "Shake before use.",
            }
        },
    )
    desk = sdk_staff(world, "receptionist", "Desk Two").client
    patient = desk.post(
        "/api/v1/patients",
        {
            "demographics": {
                "given_name": "Jonas",
                "family_name": "Becker",
                "date_of_birth": "1971-11-02",
                "sex": "male",
            }
        },
    )["patient_id"]

    page = new_page(contexts, browser)
    register(
        page,
        world.url,
        token_for(world, "physician"),
        "oode",
        "Dr. Omar Ode",
        specialty="Internal medicine",
    )
    physician = next(
        s["account_id"]
        for s in desk.get("/api/v1/directory", role="physician")["staff"]
        if s["display_name"] == "Dr. Omar Ode"
    )
    desk.put(f"/api/v1/physicians/{physician}/working-hours", {"weekly": ALL_WEEK})
    today = datetime.now(UTC).date()
    slots = desk.get(
        f"/api/v1/physicians/{physician}/free-slots",
        first_day=today.isoformat(),
        last_day=(today + timedelta(days=6)).isoformat(),
    )["slots"]
    slot = next(s for s in slots if datetime.fromisoformat(s["start"]) > datetime.now(UTC))
    expect(page.get_by_role("heading", name="Today")).to_be_visible()
    expect(page.get_by_text("live", exact=True)).to_be_visible()
    # booked at the desk while the physician looks: a live notification, no reload
    desk.post(
        "/api/v1/appointments",
        {
            "patient_id": patient,
            "physician_id": physician,
            "start": slot["start"],
            "end": slot["end"],
            "reason": "Persistent cough",
        },
    )
    # the notice names the patient (and their age)
    expect(page.get_by_role("complementary", name="Notifications")).to_contain_text(
        "New appointment booked with Jonas Becker ("
    )
    page.get_by_role("button", name="Week", exact=True).click()
    expect(page.get_by_role("heading", name="This week")).to_be_visible()
    appointments = page.get_by_role("table", name="Appointments")
    expect(appointments).to_contain_text("Jonas Becker")
    expect(appointments).to_contain_text("Persistent cough")
    screenshot(page, "physician")
    appointments.get_by_role("button", name="Open chart").first.click()

    chart = page.get_by_role("region", name="Chart")
    expect(chart.get_by_role("heading", name="Jonas Becker", level=2)).to_be_visible()
    # an allergy on the patient's own list (the banner says so at once)
    expect(chart.get_by_role("note", name="Allergy banner")).to_have_text(
        "Allergies: No known allergies recorded."
    )
    allergy = chart.get_by_role("form", name="Add an allergy")
    allergy.get_by_label("Allergy to (substance or class)").fill("Penicillin")
    allergy.get_by_label("Severity").select_option("moderate")
    allergy.get_by_role("button", name="Add allergy").click()
    expect(chart.get_by_text("Penicillin added to the allergy list.")).to_be_visible()
    encounter = page.get_by_role("region", name="Record an encounter")
    encounter.get_by_label("Chief complaint").fill("Wheezing at night")
    encounter.get_by_label("Assessment").fill("Likely asthma")
    for search, pick in (("J45.9", "J45.9 Asthma, unspecified"), ("R05", "R05 Cough")):
        encounter.get_by_label("Diagnosis (ICD-10)").fill(search)
        encounter.get_by_role("option", name=pick).click()
    encounter.get_by_label("Systolic (mmHg)").fill("128")
    encounter.get_by_label("Diastolic (mmHg)").fill("82")
    encounter.get_by_label("Heart rate (/min)").fill("88")
    encounter.get_by_label("Temperature (°C)").fill("37.2")
    encounter.get_by_label("SpO₂ (%)").fill("97")
    encounter.get_by_role("button", name="Record encounter").click()
    expect(encounter.get_by_text("Encounter recorded.")).to_be_visible()
    encounters = chart.get_by_role("list", name="Encounters")
    expect(encounters).to_contain_text("Wheezing at night")
    expect(encounters).to_contain_text("J45.9 Asthma, unspecified; R05 Cough")
    expect(encounters).to_contain_text("BP 128/82 mmHg")
    expect(chart.get_by_role("note", name="Allergy banner")).to_contain_text(
        "Penicillin (moderate)"
    )
    encounters.get_by_role("button", name="Show versions").click()
    expect(encounters.get_by_role("list", name="Versions")).to_contain_text("Version 1")

    # e-prescribe from the catalog, signed in the browser, and verify the signature
    rx = page.get_by_role("region", name="E-prescription")
    rx.get_by_label("Search the medicine catalog").fill("salb")
    options = rx.get_by_role("listbox", name="Suggestions").get_by_role("option")
    expect(options).to_have_count(1)
    expect(options).to_contain_text("salbutamol")  # its ingredient (and classes) shown
    options.click()
    expect(rx.get_by_test_id("safety-clear")).to_be_visible()
    rx.get_by_label("Dose").fill("2 puffs")
    rx.get_by_label("Frequency").fill("as needed")
    rx.get_by_label("Days").fill("30")
    rx.get_by_label("Quantity").fill("1")
    rx.get_by_label("Refills").fill("1")
    rx.get_by_role("button", name="Sign and prescribe").click()
    expect(
        rx.get_by_text("Prescription of Salbutamol 100 micrograms signed and sent.")
    ).to_be_visible()
    active = chart.get_by_role("list", name="Active prescriptions")
    salbutamol = active.locator("li", has_text="Salbutamol")
    expect(salbutamol).to_contain_text("Shake before use.")
    salbutamol.get_by_role("button", name="Verify signature").click()
    expect(salbutamol.get_by_test_id("verification")).to_contain_text("Signature verified")

    # a free-text prescription, then cancelled
    rx.get_by_label("Free text (outside the catalog)").check()
    rx.get_by_label("Drug name").fill("Prednisolone")
    rx.get_by_label("Strength").fill("5 mg")
    rx.get_by_label("Dose").fill("1 tablet")
    rx.get_by_label("Frequency").fill("once daily")
    rx.get_by_role("button", name="Sign and prescribe").click()
    expect(rx.get_by_text("Prescription of Prednisolone 5 mg signed and sent.")).to_be_visible()
    prednisolone = active.locator("li", has_text="Prednisolone")
    expect(prednisolone).to_contain_text("free text")
    prednisolone.get_by_role("button", name="Verify signature").click()
    expect(prednisolone.get_by_test_id("verification")).to_contain_text("Signature verified")
    prednisolone.get_by_role("button", name="Cancel prescription").click()
    prednisolone.get_by_label("Reason for cancelling").fill("Not needed after all")
    prednisolone.get_by_role("button", name="Confirm cancellation").click()
    expect(page.get_by_text("Prescription of Prednisolone cancelled.")).to_be_visible()
    expect(active.locator("li", has_text="Prednisolone")).to_have_count(0)
    expect(active.locator("li", has_text="Salbutamol")).to_have_count(1)
    # cancelled ones stay in the medication history, with the reason
    cancelled = chart.get_by_role("list", name="Cancelled prescriptions")
    expect(cancelled.locator("li", has_text="Prednisolone")).to_contain_text(
        "by Dr. Omar Ode: Not needed after all"
    )
    chart.get_by_role("heading", name="Jonas Becker", level=2).scroll_into_view_if_needed()
    screenshot(page, "physician-chart", top=False)

    # no care relationship: 403 naming break-glass; the chart offers it
    stranger = desk.post(
        "/api/v1/patients",
        {
            "demographics": {
                "given_name": "Lena",
                "family_name": "Fischer",
                "date_of_birth": "1990-05-17",
                "sex": "female",
            }
        },
    )["patient_id"]
    mrn = desk.get(f"/api/v1/patients/{stranger}")["mrn"]
    finder = page.get_by_role("region", name="Find a patient")
    finder.get_by_label("or record number").fill(mrn)
    finder.get_by_role("button", name="Search").click()
    finder.get_by_role("button", name="Open chart").click()
    glass = page.get_by_role("region", name="Emergency access (break-glass)")
    expect(glass).to_be_visible()
    expect(page.get_by_text("no care relationship with this patient").first).to_be_visible()
    glass.get_by_label("Reason for emergency access").fill("Unconscious in the emergency room")
    glass.get_by_role("button", name="Break the glass and open the chart").click()
    expect(chart.get_by_role("heading", name="Lena Fischer", level=2)).to_be_visible()

    # the administrators hear of it at once, review it, and see who read the records
    expect(admin_page.get_by_role("complementary", name="Notifications")).to_contain_text(
        "Emergency access (break-glass) opened by Dr. Omar Ode"
    )
    tab(admin_page, "Break-glass")
    report = admin_page.get_by_role("table", name="Break-glass report")
    grant = report.locator("tr", has_text="Unconscious in the emergency room")
    grant.get_by_label("Note").fill("Confirmed with the ER")
    grant.get_by_role("button", name="Acknowledge").click()
    expect(grant).to_contain_text("reviewed by Ada Lovelace: Confirmed with the ER")
    tab(admin_page, "Audit")
    history = admin_page.get_by_role("region", name="Patient access history")
    history.get_by_label("Patient id").fill(patient)
    history.get_by_role("button", name="Show who accessed this record").click()
    expect(history.get_by_role("table", name="Accesses to this record")).to_contain_text(
        "Dr. Omar Ode (physician)"
    )


def test_two_users_chat_live_with_unread_badges_and_read_receipts(
    world: Mesh, browser: Browser, contexts: list[BrowserContext]
) -> None:
    from playwright.sync_api import expect

    desk = new_page(contexts, browser)
    register(desk, world.url, token_for(world, "receptionist"), "paula", "Paula Front")
    doctor = new_page(contexts, browser)
    register(doctor, world.url, token_for(world, "physician"), "hkim", "Dr. Hana Kim")
    for page in (desk, doctor):  # both live channels are up
        expect(page.get_by_text("live", exact=True)).to_be_visible()

    tab(desk, "Chat")
    desk.get_by_label("Start a conversation with").select_option(label="Dr. Hana Kim (physician)")
    desk.get_by_role("button", name="Open conversation").click()
    expect(desk.get_by_role("heading", name="Dr. Hana Kim")).to_be_visible()
    desk.get_by_label("Message", exact=True).fill("Your 10:30 patient is in room 3.")
    desk.get_by_role("button", name="Send").click()
    log = desk.get_by_role("log", name="Messages")
    expect(log).to_contain_text("Your 10:30 patient is in room 3.")
    expect(log.get_by_label("Read receipt").last).to_have_text("Sent")

    # the physician, on another screen: an unread badge appears without a reload
    nav = doctor.get_by_role("navigation", name="Sections")
    expect(nav.get_by_label("1 unread")).to_be_visible()
    tab(doctor, "Chat")
    doctor.get_by_role("list", name="Conversation list").get_by_role(
        "button", name="Paula Front"
    ).click()
    expect(doctor.get_by_role("log", name="Messages")).to_contain_text("room 3")
    expect(nav.get_by_label("1 unread")).to_have_count(0)
    # the sender sees the read receipt live
    expect(log.get_by_label("Read receipt").last).to_have_text("Read by Dr. Hana Kim")
    doctor.get_by_label("Message", exact=True).fill("On my way.")
    doctor.keyboard.press("Enter")
    expect(log).to_contain_text("On my way.")
    # read on screen: marked read at once, so no badge stays
    expect(desk.get_by_role("navigation", name="Sections").get_by_label("1 unread")).to_have_count(
        0
    )
    screenshot(desk, "chat")


def test_auto_lock_demands_the_passphrase_and_the_key_moves_to_another_browser(
    world: Mesh, browser: Browser, contexts: list[BrowserContext], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    page = new_page(contexts, browser)
    sockets: list[Any] = []
    page.on("websocket", lambda ws: sockets.append(ws))
    register(
        page, world.url, token_for(world, "receptionist"), "lars", "Lars Lock", path="/?lock=5"
    )
    with page.expect_download() as download:  # at once: the lock is 5 s away
        page.get_by_role("button", name="Export key").click()
    expect(page.get_by_text("live", exact=True)).to_be_visible()
    key_file = tmp_path / "key.json"
    download.value.save_as(key_file)
    exported = json.loads(key_file.read_text())
    assert set(exported) == {
        "accountId",
        "username",
        "role",
        "publicKey",
        "salt",
        "iv",
        "wrapped",
        "iterations",
        "baseUrl",
    }
    assert exported["iterations"] >= 600_000

    # no activity: locked, the WebSocket closed, the passphrase asked for again
    expect(page.get_by_role("heading", name="Unlock")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Locked after 5 seconds without activity")).to_be_visible()
    assert sockets
    for ws in sockets:
        if not ws.is_closed():
            ws.wait_for_event("close", timeout=10_000)
    signed: list[str] = []
    page.on("request", lambda r: signed.append(r.url) if "signature" in r.headers else None)
    page.get_by_label("Passphrase").fill("not the passphrase")
    page.keyboard.press("Enter")
    expect(page.get_by_text("The passphrase is wrong.")).to_be_visible()
    assert signed == []  # the old key signs nothing while locked
    page.get_by_label("Passphrase").fill(PASSPHRASE)
    page.keyboard.press("Enter")
    expect(page.get_by_text("Lars Lock ·")).to_be_visible()
    assert any(url.endswith("/api/v1/me") for url in signed)

    # the exported key, imported into a fresh browser, unlocks there
    other = new_page(contexts, browser)
    other.goto(world.url + "/")
    other.get_by_text("Already registered elsewhere? Import your key file").click()
    other.get_by_label("Key file").set_input_files(str(key_file))
    expect(other.get_by_text("Key imported")).to_be_visible()
    other.get_by_label("Passphrase").fill(PASSPHRASE)
    other.get_by_role("button", name="Unlock").click()
    expect(other.get_by_text("Lars Lock ·")).to_be_visible()


def test_unseal_the_keyvault_and_rewrap_after_a_rotation_from_the_browser(
    world: Mesh, admin_page: Page
) -> None:
    from playwright.sync_api import expect

    page = admin_page
    world.admin().client.post("/api/v1/vault/seal")
    tab(page, "Keyvault")
    page.get_by_role("button", name="Refresh").click()
    expect(page.get_by_test_id("vault-state").first).to_have_text("sealed")
    for number, share in enumerate(world.shares[:3], start=1):
        page.get_by_label("Your unseal share").fill(share)
        page.get_by_role("button", name="Submit share").click()
        state = "unsealed" if number == 3 else f"sealed ({number} of 3)"
        expect(page.get_by_role("region", name="Unseal")).to_contain_text(state)
    expect(page.get_by_test_id("vault-state").first).to_have_text("unsealed")
    assert page.get_by_label("Your unseal share").input_value() == ""

    # a rotation retires the data keys; the rewrap started here moves every row off them
    world.admin().client.post(
        "/api/v1/vault/rotate", {"add": 1, "retire_existing": True, "purpose": "data"}
    )
    page.get_by_role("button", name="Refresh").click()
    keys = page.get_by_role("table", name="Keys")
    expect(keys.get_by_test_id("key-state").filter(has_text="retired").first).to_be_visible()
    page.get_by_role("button", name="Start a rewrap").click()
    rewrap = page.get_by_role("region", name="Keys and rewrap")
    expect(rewrap.get_by_test_id("rewrap-state")).to_contain_text("Complete", timeout=120_000)
    status = world.admin().client.get("/api/v1/vault/rewrap")
    assert status["state"] == "complete" and status["failures"] == []
    assert status["rows_done"] == status["rows_total"] > 0
    assert not any(status["retired_in_use"].values()), status["retired_in_use"]
    expect(rewrap.get_by_test_id("rewrap-rows")).to_contain_text(
        f"{status['rows_done']} of {status['rows_total']} rows"
    )


def test_no_browser_kept_patient_data_and_the_csp_held(
    world: Mesh, contexts: list[BrowserContext]
) -> None:
    if not contexts:
        pytest.skip("checks the browsers the flows above used: run it with them")
    for context in contexts:
        for page in context.pages:
            stored = browser_storage(page)
            for name in PATIENT_NAMES:
                assert name not in stored, (name, stored[:500])
            databases = json.loads(stored)["idb"]
            assert set(databases) <= {"medihaven"}
            assert all(set(stores) == {"keys"} for stores in databases.values())
    assert CSP_PROBLEMS == []
