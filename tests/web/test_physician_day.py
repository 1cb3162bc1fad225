"""A physician's whole day in the web app (issue 15), in Debian's Chromium against the
whole mesh as real processes: the calendar by day and week naming patients with their
age, the allergy banner and list, ICD-10 diagnoses, the whole encounter note and its
amendments, prescribing amoxicillin to a patient allergic to penicillin (blocked until a
written override, which is signed and shown), alerts that change between the check and
the signature (409, checked again), the printable prescription and its verification, and
unsaved work that survives Lock and auto-lock and is never written to browser storage.

The tests run in order (`-p no:randomly`) on one physician's browser.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pytest

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

ALL_WEEK = [
    {"weekday": d, "start": "00:00", "end": "24:00"}
    for d in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
]
AMOXICILLIN = {
    "name": "Amoxicillin",
    "active_ingredient": "amoxicillin",
    "strength": "500 mg",
    "dosage_form": "capsule",
    "route": "oral",
    "type": "antibiotic",
    "default_instructions": "Complete the course.",
}
ADULT = {"given_name": "Mirela", "family_name": "Dragan", "date_of_birth": "1968-04-23"}
OVERRIDE = "Tolerated amoxicillin in 2024 under observation; benefit outweighs the risk."
DRAFT_TEXTS = [
    "Draft: dizziness since Monday",
    "Started after a fall",
    "Draft message to a colleague",
]


def age_on(born: date, on: date) -> str:
    """The age the app shows (frontend/src/shared/age.ts): years from 2, months for infants."""
    months = (on.year - born.year) * 12 + on.month - born.month - (on.day < born.day)
    if months >= 24:
        return f"{months // 12} years"
    return f"{months} month{'s' if months != 1 else ''}"


def infant_birth_date(today: date) -> date:
    """Five months and a few days ago, on a day every month has."""
    month = today.month - 5
    year = today.year + (month - 1) // 12
    month = (month - 1) % 12 + 1
    return date(year, month, min(today.day, 28)) - timedelta(days=3)


def grouped(digest: str) -> str:
    return " ".join(digest[i : i + 4] for i in range(0, len(digest), 4))


class Clinic:
    """The people and records the day is made of (set up with the Python SDK)."""

    def __init__(self, world: Mesh) -> None:
        self.world = world
        admin = world.admin().client
        admin.post("/api/v1/catalog/medicines", {"details": AMOXICILLIN})
        self.desk = world.staff("receptionist").client
        self.colleague: Staff = world.staff("physician")  # reads back what the browser signed
        self.infant = infant_birth_date(date.today())
        self.adult_id = self.new_patient(ADULT)
        self.infant_id = self.new_patient(
            {
                "given_name": "Noa",
                "family_name": "Ilic",
                "date_of_birth": self.infant.isoformat(),
            }
        )
        self.physician_id = ""

    def new_patient(self, demographics: dict[str, str]) -> str:
        return str(
            self.desk.post("/api/v1/patients", {"demographics": {**demographics, "sex": "female"}})[
                "patient_id"
            ]
        )

    def mrn(self, patient_id: str) -> str:
        return str(self.desk.get(f"/api/v1/patients/{patient_id}")["mrn"])

    def free_slots(self, physician_id: str) -> list[dict[str, Any]]:
        """The free slots from now on over the next days, with working hours all week."""
        self.desk.put(f"/api/v1/physicians/{physician_id}/working-hours", {"weekly": ALL_WEEK})
        today = datetime.now(UTC).date()
        slots: list[dict[str, Any]] = self.desk.get(
            f"/api/v1/physicians/{physician_id}/free-slots",
            first_day=today.isoformat(),
            last_day=(today + timedelta(days=6)).isoformat(),
        )["slots"]
        return [s for s in slots if datetime.fromisoformat(s["start"]) > datetime.now(UTC)]

    def zone(self, physician_id: str) -> ZoneInfo:
        calendar = self.desk.get(
            f"/api/v1/physicians/{physician_id}/calendar", day=date.today().isoformat()
        )
        return ZoneInfo(calendar["time_zone"])

    def day_with_room(self, physician_id: str, visits: int) -> date:
        """The first clinic day that still has free slots for `visits` visits (today's may
        not: a run late in the evening has only minutes of it left)."""
        zone = self.zone(physician_id)
        days = [
            datetime.fromisoformat(s["start"]).astimezone(zone).date()
            for s in self.free_slots(physician_id)
        ]
        return next(d for d in sorted(set(days)) if days.count(d) >= visits)

    def book(
        self, physician_id: str, patient_id: str, reason: str, on: date | None = None
    ) -> dict[str, Any]:
        """The first free slot from now on (on the clinic day `on`, if given)."""
        zone = self.zone(physician_id)
        slot = next(
            s
            for s in self.free_slots(physician_id)
            if on is None or datetime.fromisoformat(s["start"]).astimezone(zone).date() == on
        )
        booked: dict[str, Any] = self.desk.post(
            "/api/v1/appointments",
            {
                "patient_id": patient_id,
                "physician_id": physician_id,
                "start": slot["start"],
                "end": slot["end"],
                "reason": reason,
            },
        )
        return booked


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    require_browser()
    # One physician's whole day in half a minute: far more patient-data reads per second
    # than the gateway's bucket for a person (30 at once, 1/s) allows; that bucket is
    # tested in tests/gateway, and the app's answer to a 429 in
    # frontend/src/shared/api/client.test.ts.
    with web_mesh(
        "day", tmp_path_factory.mktemp("daylogs"), MEDIHAVEN_RATE_PATIENT_CAPACITY="1000"
    ) as mesh:
        yield mesh


@pytest.fixture(scope="module")
def clinic(world: Mesh) -> Clinic:
    # Before Playwright starts: bootstrapping the administrator runs its own event loop.
    made = Clinic(world)
    made.book(made.colleague.account_id, made.adult_id, "Second opinion")
    return made


@pytest.fixture(scope="module")
def browser(clinic: Clinic) -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def contexts() -> list[BrowserContext]:
    return []


@pytest.fixture(scope="module")
def page(clinic: Clinic, browser: Browser, contexts: list[BrowserContext]) -> Page:
    """Dr. Ines Ward, registered in the browser (her key made there)."""
    token = clinic.world.admin().client.post("/api/v1/tokens", {"role": "physician"})["token"]
    page = new_page(contexts, browser)
    register(page, clinic.world.url, token, "iward", "Dr. Ines Ward", specialty="General practice")
    clinic.physician_id = next(
        s["account_id"]
        for s in clinic.desk.get("/api/v1/directory", role="physician")["staff"]
        if s["display_name"] == "Dr. Ines Ward"
    )
    return page


def open_chart(page: Page, clinic: Clinic, patient_id: str) -> None:
    tab(page, "Chart")
    finder = page.get_by_role("region", name="Find a patient")
    finder.get_by_label("or record number").fill(clinic.mrn(patient_id))
    finder.get_by_role("button", name="Search").click()
    finder.get_by_role("button", name="Open chart").click()


def chart_of(page: Page) -> Any:
    return page.get_by_role("region", name="Chart")


def test_calendar_by_day_and_week_names_patients_with_their_age(clinic: Clinic, page: Page) -> None:
    from playwright.sync_api import expect

    expect(page.get_by_role("heading", name="Today")).to_be_visible()
    expect(page.get_by_text("live", exact=True)).to_be_visible()
    # booked at the desk while the physician looks: the notice names the patient
    adult_age = age_on(date.fromisoformat(ADULT["date_of_birth"]), date.today())
    # both visits on one clinic day, so that its day view shows the two
    visit_day = clinic.day_with_room(clinic.physician_id, visits=2)
    booked = clinic.book(
        clinic.physician_id, clinic.adult_id, "Recurrent chest infections", on=visit_day
    )
    notices = page.get_by_role("complementary", name="Notifications")
    expect(notices).to_contain_text(f"New appointment booked with Mirela Dragan ({adult_age})")
    clinic.book(clinic.physician_id, clinic.infant_id, "Vaccination", on=visit_day)
    expect(notices).to_contain_text(
        f"New appointment booked with Noa Ilic ({age_on(clinic.infant, date.today())})"
    )
    assert "months" in age_on(clinic.infant, date.today())

    # the day of the booking, from the date picker (in the clinic's time zone)
    zone = clinic.zone(clinic.physician_id)
    day = datetime.fromisoformat(booked["start"]).astimezone(zone).date()
    assert day == visit_day
    today = datetime.now(zone).date()  # the calendar's "today" is the clinic's
    page.get_by_label("Go to date").fill(day.isoformat())
    appointments = page.get_by_role("table", name="Appointments")
    expect(appointments).to_contain_text(f"Mirela Dragan, {adult_age}")
    expect(appointments).to_contain_text("Recurrent chest infections")
    expect(appointments).to_contain_text(f"Noa Ilic, {age_on(clinic.infant, date.today())}")

    # the week, the next week and back
    page.get_by_role("button", name="Week", exact=True).click()
    monday = day - timedelta(days=day.weekday())
    this_monday = today - timedelta(days=today.weekday())
    week_title = "This week" if monday == this_monday else "Week of"
    expect(page.get_by_role("heading", level=2).first).to_contain_text(week_title)
    week = page.get_by_role("grid", name="Week view")
    expect(week).to_contain_text("Mirela Dragan")
    page.get_by_role("button", name="Next week").click()
    expect(page.get_by_label("Go to date")).to_have_value((day + timedelta(days=7)).isoformat())
    expect(page.get_by_role("heading", name="Week of")).to_be_visible()
    expect(appointments).not_to_contain_text("Recurrent chest infections")
    page.get_by_role("button", name="Previous week").click()
    expect(appointments).to_contain_text("Recurrent chest infections")
    screenshot(page, "physician-week")
    # a day of the week grid opens its day view; back to today
    week.get_by_role("button", name=re.compile(rf"^Day view of \D*\b{day.day} ")).click()
    expect(page.get_by_label("Go to date")).to_have_value(day.isoformat())
    expect(page.get_by_role("button", name="Previous day")).to_be_visible()
    page.get_by_role("button", name="Previous day").click()
    expect(page.get_by_label("Go to date")).to_have_value((day - timedelta(days=1)).isoformat())
    page.get_by_role("button", name="Back to today").click()
    expect(page.get_by_role("heading", name="Today")).to_be_visible()


def test_allergy_banner_list_icd10_note_and_amendment(clinic: Clinic, page: Page) -> None:
    from playwright.sync_api import expect

    adult_age = age_on(date.fromisoformat(ADULT["date_of_birth"]), date.today())
    open_chart(page, clinic, clinic.adult_id)
    chart = chart_of(page)
    expect(chart.get_by_role("heading", level=2)).to_have_text(
        re.compile(f"Mirela Dragan, {adult_age} \\(MH-")
    )
    banner = chart.get_by_role("note", name="Allergy banner")
    expect(banner).to_have_text("Allergies: No known allergies recorded.")

    # penicillin from the drug vocabulary, severe; a free-text one later refuted
    add = chart.get_by_role("form", name="Add an allergy")
    add.get_by_label("Allergy to (substance or class)").fill("penic")
    add.get_by_role("option", name="penicillin (substance)").click()
    expect(add.get_by_text("From the drug vocabulary: ingredient:penicillin")).to_be_visible()
    add.get_by_label("Severity").select_option("severe")
    add.get_by_label("Reaction").fill("anaphylaxis")
    add.get_by_role("button", name="Add allergy").click()
    expect(chart.get_by_text("Penicillin added to the allergy list.")).to_be_visible()
    expect(banner).to_contain_text("Penicillin (severe, anaphylaxis)")
    add.get_by_label("Allergy to (substance or class)").fill("Sticking plaster")
    expect(add.get_by_text("Not in the drug vocabulary")).to_be_visible()
    add.get_by_role("button", name="Add allergy").click()
    expect(banner).to_contain_text("Sticking plaster (unknown)")
    # the same substance twice: refused, and the refusal goes once the form changes
    add.get_by_label("Allergy to (substance or class)").fill("sticking plaster")
    add.get_by_role("button", name="Add allergy").click()
    refusal = chart.get_by_text("already on the allergy list")
    expect(refusal).to_be_visible()
    add.get_by_label("Reaction").fill("rash")
    expect(refusal).to_have_count(0)
    add.get_by_label("Allergy to (substance or class)").fill("")
    add.get_by_label("Reaction").fill("")
    listed = chart.get_by_role("table", name="Allergy list")
    plaster = listed.locator("tr", has_text="Sticking plaster")
    plaster.get_by_role("button", name="Change Sticking plaster").click()
    plaster.get_by_label("Severity").select_option("mild")
    plaster.get_by_role("button", name="Save").click()
    expect(banner).to_contain_text("Sticking plaster (mild)")
    plaster.get_by_role("button", name="Mark Sticking plaster refuted").click()
    expect(plaster.get_by_test_id("allergy-status")).to_have_text("refuted")
    expect(plaster).to_contain_text("by Dr. Ines Ward")
    expect(banner).not_to_contain_text("Sticking plaster")
    expect(banner).to_contain_text("Penicillin (severe, anaphylaxis)")

    # an encounter: the whole note, multi-line, and an ICD-10 diagnosis searched by words
    encounter = page.get_by_role("region", name="Record an encounter")
    encounter.get_by_label("Chief complaint").fill("Wheeze and cough")
    encounter.get_by_label("History of present illness").fill(
        "Three weeks of night cough.\nWorse after exercise."
    )
    encounter.get_by_label("Examination").fill("Scattered expiratory wheeze")
    encounter.get_by_label("Diagnosis (ICD-10)").fill("asth")
    encounter.get_by_role("option", name="J45.9 Asthma, unspecified").click()
    chips = encounter.get_by_role("list", name="Chosen diagnoses")
    expect(chips).to_contain_text("J45.9 Asthma, unspecified")
    encounter.get_by_role("button", name="Record encounter").click()
    expect(encounter.get_by_text("Encounter recorded.")).to_be_visible()
    expect(encounter.get_by_label("Chief complaint")).to_have_value("")
    encounters = chart.get_by_role("list", name="Encounters")
    note = encounters.get_by_role("listitem").first
    expect(note).to_contain_text("History of present illness")
    expect(note).to_contain_text("Three weeks of night cough.")
    assert "night cough.\nWorse after exercise." in note.inner_text()  # line breaks kept
    expect(note).to_contain_text("Scattered expiratory wheeze")
    expect(note).to_contain_text("J45.9 Asthma, unspecified")

    # amend it with a reason: the versions list who, when and why; the old one is viewable
    note.get_by_role("button", name="Amend", exact=True).click()
    amend = note.get_by_role("region", name="Amend the encounter")
    expect(amend.get_by_label("Chief complaint")).to_have_value("Wheeze and cough")
    expect(amend.get_by_role("list", name="Chosen diagnoses")).to_contain_text("J45.9")
    amend.get_by_label("Examination").fill("Scattered expiratory wheeze; peak flow 320 l/min")
    save = amend.get_by_role("button", name="Save amendment")
    expect(save).to_be_disabled()
    amend.get_by_label("Reason for the amendment").fill("Peak flow result added")
    save.click()
    versions = note.get_by_role("list", name="Versions")
    expect(versions.get_by_role("listitem")).to_have_count(2)
    expect(versions).to_contain_text("Version 2")
    expect(versions).to_contain_text("by Dr. Ines Ward (amended: Peak flow result added)")
    expect(versions).to_contain_text("Version 1")
    expect(note).to_contain_text("peak flow 320 l/min")
    versions.get_by_role("button", name="View version 1").click()
    old = versions.get_by_role("region", name="Version 1")
    expect(old).to_contain_text("Scattered expiratory wheeze")
    expect(old).not_to_contain_text("peak flow")


def test_penicillin_allergy_blocks_amoxicillin_until_a_written_override(
    clinic: Clinic, page: Page
) -> None:
    from playwright.sync_api import expect

    rx = page.get_by_role("region", name="E-prescription")
    expect(rx.get_by_role("note", name="Allergy banner")).to_contain_text(
        "Penicillin (severe, anaphylaxis)"
    )
    rx.get_by_label("Search the medicine catalog").fill("amox")
    option = rx.get_by_role("option", name="Amoxicillin 500 mg capsule")
    expect(option).to_contain_text("amoxicillin · ")  # its ingredients, then its classes
    expect(option).to_contain_text("penicillins")
    option.click()
    expect(rx.get_by_label("Chosen medicine")).to_contain_text("penicillins")
    alerts = rx.get_by_role("alert", name="Safety alerts")
    expect(alerts).to_contain_text(
        "Allergy to Penicillin (severe, anaphylaxis): Amoxicillin 500 mg is one of the penicillins."
    )
    expect(alerts).to_contain_text("high")
    sign = rx.get_by_role("button", name="Override and sign")
    expect(sign).to_be_disabled()
    expect(rx.get_by_role("button", name="Sign and prescribe")).to_have_count(0)
    rx.get_by_label("Dose").fill("1 capsule")
    rx.get_by_label("Frequency").fill("three times daily")
    rx.get_by_label("Days").fill("5")
    rx.get_by_label("Quantity").fill("15")
    expect(sign).to_be_disabled()  # still: no reason yet
    rx.get_by_label("Reason for overriding the alerts").fill(OVERRIDE)
    expect(sign).to_be_enabled()
    sign.click()
    expect(rx.get_by_text("Prescription of Amoxicillin 500 mg signed and sent.")).to_be_visible()

    # shown with the override on the chart, and so it is stored, signed and verified
    active = chart_of(page).get_by_role("list", name="Active prescriptions")
    card = active.locator("li", has_text="Amoxicillin")
    override = card.get_by_test_id("override")
    expect(override).to_contain_text("Overridden alerts: Allergy (Penicillin).")
    expect(override).to_contain_text(f"Reason: {OVERRIDE}")
    listed = clinic.colleague.client.get(f"/api/v1/patients/{clinic.adult_id}/prescriptions")
    (stored,) = [
        p for p in listed["prescriptions"] if p["medication"]["drug_name"] == "Amoxicillin"
    ]
    allergies = clinic.colleague.client.get(f"/api/v1/patients/{clinic.adult_id}/allergies")
    (penicillin,) = [a for a in allergies["allergies"] if a["code"] == "ingredient:penicillin"]
    assert stored["alerts"] == [f"allergy:{penicillin['allergy_id']}"]
    assert stored["override_reason"] == OVERRIDE
    assert stored["prescriber_id"] == clinic.physician_id
    verified = clinic.colleague.client.get(
        f"/api/v1/prescriptions/{stored['prescription_id']}/verify"
    )
    assert verified["valid"] and verified["signature_valid"], verified
    card.get_by_role("button", name="Verify signature").click()
    expect(card.get_by_test_id("verification")).to_contain_text("Signature verified")
    screenshot(page, "physician-override", top=False)


def test_alerts_changed_since_the_check_are_refused_and_checked_again(
    clinic: Clinic, page: Page
) -> None:
    """The check said nothing; an NSAID allergy is recorded meanwhile (by a colleague):
    records refuses the signature (409), the app checks again and shows the new alert."""
    from playwright.sync_api import expect

    rx = page.get_by_role("region", name="E-prescription")
    rx.get_by_label("Free text (outside the catalog)").check()
    rx.get_by_label("Drug name").fill("Ibuprofen")
    rx.get_by_label("Strength").fill("400 mg")
    rx.get_by_label("Dose").fill("1 tablet")
    rx.get_by_label("Frequency").fill("three times daily")
    expect(rx.get_by_test_id("safety-clear")).to_be_visible()
    clinic.colleague.client.post(
        f"/api/v1/patients/{clinic.adult_id}/allergies",
        {"allergy": {"substance": "NSAIDs", "code": "class:nsaids", "severity": "moderate"}},
    )
    rx.get_by_role("button", name="Sign and prescribe").click()
    refusal = rx.get_by_text("Not signed: the safety alerts changed since the check.")
    expect(refusal).to_be_visible()
    alerts = rx.get_by_role("alert", name="Safety alerts")
    expect(alerts).to_contain_text("The safety alerts changed since the check")
    expect(alerts).to_contain_text("Allergy to NSAIDs (moderate): Ibuprofen 400 mg is one of the")
    sign = rx.get_by_role("button", name="Override and sign")
    expect(sign).to_be_disabled()
    rx.get_by_label("Reason for overriding the alerts").fill("Short course, with food; reviewed")
    expect(refusal).to_have_count(0)  # the refusal no longer applies once the form changes
    sign.click()
    expect(rx.get_by_text("Prescription of Ibuprofen 400 mg signed and sent.")).to_be_visible()
    active = chart_of(page).get_by_role("list", name="Active prescriptions")
    expect(active.locator("li", has_text="Ibuprofen").get_by_test_id("override")).to_contain_text(
        "Allergy (NSAIDs)"
    )
    # cancelled, it stays in the history with its reason
    ibuprofen = active.locator("li", has_text="Ibuprofen")
    ibuprofen.get_by_role("button", name="Cancel prescription").click()
    ibuprofen.get_by_label("Reason for cancelling").fill("Switched to paracetamol")
    ibuprofen.get_by_role("button", name="Confirm cancellation").click()
    cancelled = chart_of(page).get_by_role("list", name="Cancelled prescriptions")
    expect(cancelled.locator("li", has_text="Ibuprofen")).to_contain_text(
        "by Dr. Ines Ward: Switched to paracetamol"
    )
    expect(cancelled.locator("li", has_text="Ibuprofen")).to_contain_text("Allergy (NSAIDs)")


def test_printable_prescription_verifies_in_the_app_and_over_the_api(
    clinic: Clinic, page: Page
) -> None:
    from playwright.sync_api import expect

    card = (
        chart_of(page)
        .get_by_role("list", name="Active prescriptions")
        .locator("li", has_text="Amoxicillin")
    )
    card.get_by_role("button", name="Printable prescription").click()
    sheet = page.get_by_role("dialog", name="Printable prescription")
    rx_id = sheet.get_by_test_id("print-verification-id").inner_text().strip()
    stored = clinic.colleague.client.get(f"/api/v1/prescriptions/{rx_id}")
    assert stored["medication"]["drug_name"] == "Amoxicillin"
    digest = hashlib.sha256(base64.b64decode(stored["signature"])).hexdigest()
    expect(sheet.get_by_test_id("print-fingerprint")).to_have_text(grouped(digest))
    adult_age = age_on(date.fromisoformat(ADULT["date_of_birth"]), date.today())
    patient = sheet.get_by_test_id("print-patient")
    expect(patient).to_contain_text("Mirela Dragan")
    expect(patient).to_contain_text(f"Born 1968-04-23 ({adult_age})")
    expect(patient).to_contain_text(clinic.mrn(clinic.adult_id))
    for text in (
        "Dr. Ines Ward",
        "Amoxicillin 500 mg",
        "1 capsule",
        "three times daily",
        "5 days",
        "Complete the course.",
        "Allergy (Penicillin)",
        f"Reason: {OVERRIDE}",
        f"medihaven rx verify {rx_id}",
    ):
        expect(sheet).to_contain_text(text)
    # on paper only the prescription: the chart is not printed
    page.emulate_media(media="print")
    expect(page.locator("#root")).to_be_hidden()
    expect(sheet.get_by_test_id("print-fingerprint")).to_be_visible()
    expect(sheet.get_by_role("button", name="Print")).to_be_hidden()
    page.emulate_media(media="screen")
    screenshot(page, "prescription-print")
    # the Print button opens the browser's print dialog (observed, not opened, here)
    page.evaluate(
        "() => { window.__printed = 0; window.print = () => { window.__printed += 1; }; }"
    )
    sheet.get_by_role("button", name="Print").click()
    page.wait_for_function("() => window.__printed === 1")
    sheet.get_by_role("button", name="Close").click()
    expect(sheet).to_have_count(0)

    # the verification id, in the app's "Verify a prescription" box and over the API
    box = page.get_by_role("region", name="Verify a prescription")
    box.get_by_label("Verification id").fill("not-an-id")
    box.get_by_role("button", name="Verify").click()
    hint = box.get_by_text("A verification id is the prescription's id")
    expect(hint).to_be_visible()
    box.get_by_label("Verification id").fill(f"  {rx_id.upper()} ")
    expect(hint).to_have_count(0)
    box.get_by_role("button", name="Verify").click()
    result = box.get_by_test_id("verify-result")
    expect(result).to_contain_text("Signature verified")
    expect(result).to_contain_text("Amoxicillin 500 mg")
    expect(result).to_contain_text("by Dr. Ines Ward")
    expect(result).to_contain_text(OVERRIDE)
    verified = clinic.colleague.client.get(f"/api/v1/prescriptions/{rx_id}/verify")
    assert verified["valid"] is True and verified["problems"] == []


def test_unsaved_work_survives_lock_and_auto_lock_and_reload_asks_first(
    clinic: Clinic, page: Page, contexts: list[BrowserContext]
) -> None:
    from playwright.sync_api import expect

    # a message to a colleague, not sent
    tab(page, "Chat")
    page.get_by_label("Start a conversation with").select_option(
        label=f"{clinic.colleague.account['display_name']} (physician)"
    )
    page.get_by_role("button", name="Open conversation").click()
    page.get_by_label("Message", exact=True).fill(DRAFT_TEXTS[2])
    # an encounter, an allergy and a prescription, not saved
    tab(page, "Chart")
    encounter = page.get_by_role("region", name="Record an encounter")
    encounter.get_by_label("Chief complaint").fill(DRAFT_TEXTS[0])
    encounter.get_by_label("History of present illness").fill(DRAFT_TEXTS[1])
    chart_of(page).get_by_label("Allergy to (substance or class)").fill("Latex gloves")
    rx = page.get_by_role("region", name="E-prescription")
    rx.get_by_label("Search the medicine catalog").fill("amox")
    rx.get_by_role("option", name="Amoxicillin 500 mg capsule").click()
    rx.get_by_label("Reason for overriding the alerts").fill("Draft reason")

    page.get_by_role("button", name="Lock").click()
    expect(page.get_by_role("heading", name="Unlock")).to_be_visible()
    expect(page.get_by_text("Your unsaved work is kept")).to_be_visible()
    html = page.content()
    for text in ["Mirela", "Dragan", *DRAFT_TEXTS]:
        assert text not in html, text  # the screen is hidden, not just covered
    stored = browser_storage(page)
    for text in ["Mirela", "Latex gloves", "Draft reason", *DRAFT_TEXTS]:
        assert text not in stored, text
    page.get_by_label("Passphrase").fill(PASSPHRASE)
    page.keyboard.press("Enter")
    encounter = page.get_by_role("region", name="Record an encounter")
    expect(encounter.get_by_label("Chief complaint")).to_have_value(DRAFT_TEXTS[0])
    expect(encounter.get_by_label("History of present illness")).to_have_value(DRAFT_TEXTS[1])
    expect(chart_of(page).get_by_label("Allergy to (substance or class)")).to_have_value(
        "Latex gloves"
    )
    rx = page.get_by_role("region", name="E-prescription")
    expect(rx.get_by_label("Reason for overriding the alerts")).to_have_value("Draft reason")
    expect(rx.get_by_role("alert", name="Safety alerts")).to_contain_text("Allergy to Penicillin")
    tab(page, "Chat")
    expect(page.get_by_label("Message", exact=True)).to_have_value(DRAFT_TEXTS[2])
    tab(page, "Chart")

    # another tab of the same browser, with a short auto-lock: a countdown, then the lock
    other = page.context.new_page()
    other.goto(clinic.world.url + "/chart?lock=8")
    other.get_by_label("Passphrase").fill(PASSPHRASE)
    other.keyboard.press("Enter")
    expect(other.get_by_text("Dr. Ines Ward ·")).to_be_visible()
    open_chart(other, clinic, clinic.adult_id)
    note = other.get_by_role("region", name="Record an encounter")
    note.get_by_label("Examination").click()
    note.get_by_label("Examination").press_sequentially("Unsteady gait")
    countdown = other.get_by_role("timer", name="Auto-lock countdown")
    expect(countdown).to_contain_text(re.compile(r"Locks in \d s without activity"))
    expect(other.get_by_role("heading", name="Unlock")).to_be_visible(timeout=30_000)
    expect(other.get_by_text("Locked after 8 seconds without activity")).to_be_visible()
    expect(other.get_by_text("Your unsaved work is kept")).to_be_visible()
    other.get_by_label("Passphrase").fill(PASSPHRASE)
    other.keyboard.press("Enter")
    note = other.get_by_role("region", name="Record an encounter")
    expect(note.get_by_label("Examination")).to_have_value("Unsteady gait")
    expect(chart_of(other).get_by_role("heading", level=2)).to_contain_text("Mirela Dragan")

    # leaving with unsaved work asks first; without any, it does not
    dialogs: list[str] = []

    def answer(dialog: Any) -> None:
        dialogs.append(dialog.type)
        dialog.accept()

    other.on("dialog", answer)
    other.get_by_label("Examination").press("End")  # a user gesture on the page
    other.reload()
    assert dialogs == ["beforeunload"]
    expect(other.get_by_role("heading", name="Unlock")).to_be_visible()
    other.get_by_label("Passphrase").fill(PASSPHRASE)
    other.keyboard.press("Enter")
    expect(other.get_by_text("Dr. Ines Ward ·")).to_be_visible()
    other.keyboard.press("Shift")  # a user gesture again
    other.reload()
    expect(other.get_by_role("heading", name="Unlock")).to_be_visible()
    assert dialogs == ["beforeunload"]  # nothing unsaved: no question
    other.close()


def test_no_patient_data_or_draft_in_browser_storage_and_the_csp_held(
    contexts: list[BrowserContext],
) -> None:
    if not contexts:
        pytest.skip("checks the browsers the flows above used: run it with them")
    for context in contexts:
        for open_page in context.pages:
            stored = browser_storage(open_page)
            for text in ["Mirela", "Dragan", "Noa Ilic", OVERRIDE, *DRAFT_TEXTS]:
                assert text not in stored, (text, stored[:500])
    assert CSP_PROBLEMS == []
