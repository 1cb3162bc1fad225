"""The front desk's and the administrator's day in the web app (issue 16), in Debian's
Chromium against the whole mesh as real processes: a physician's working time (hours per
weekday, a lunch break, a holiday), booking an afternoon slot from the day grid and moving
it, a colleague's booking appearing live in a second receptionist's browser, spelling-
tolerant search (Schmitt finds Schmidt) and the near-duplicate warning with the names,
phone numbers in any notation, today's list with check-in, no-show, and the physician
starting and finishing the visit from their day view, editing demographics (insurance,
emergency contact) with a field error said as a sentence under its field, and the
administrator's catalog, audit log in words (to the patient's access history) and the
confirmed disable.

The browsers run in other time zones than the clinic (Europe/Berlin): every time on
screen must be the clinic's. The tests run in order (`-p no:randomly`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pytest

from tests.gateway.support import Mesh, Staff
from tests.web.support import (
    CSP_PROBLEMS,
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

DASH = "\u2013"  # the en dash of times on screen ("10:00-10:30")
CLINIC = ZoneInfo("Europe/Berlin")  # the mesh's default MEDIHAVEN_CLINIC_TIMEZONE
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
ALL_WEEK = [{"weekday": d.lower(), "start": "00:00", "end": "24:00"} for d in WEEKDAYS]
PATIENT_NAMES = ["Amara", "Okonkwo", "Schmidt", "Schmitt", "Chidi", "Okafor", "Vogt", "Berger"]


def clinic_now() -> datetime:
    return datetime.now(CLINIC)


def clinic_time(instant: str) -> str:
    """The app's "Thu 3 Dec, 10:00" (en-GB) of an instant, in the clinic's zone."""
    moment = datetime.fromisoformat(instant).astimezone(CLINIC)
    return f"{moment:%a} {moment.day} {moment:%b}, {moment:%H:%M}"


class Desk:
    """The people the day is made of, set up with the Python SDK before any browser."""

    def __init__(self, world: Mesh) -> None:
        self.world = world
        self.admin = world.admin().client  # bootstraps over the bus: before Playwright starts
        self.colleague: Staff = world.staff("receptionist")
        self.desk = self.colleague.client
        self.amara = self.patient("Amara", "Okonkwo", "1984-03-09")

    def patient(self, given: str, family: str, born: str, **more: str) -> str:
        demographics = {
            "given_name": given,
            "family_name": family,
            "date_of_birth": born,
            "sex": "female",
            **more,
        }
        written = self.desk.post("/api/v1/patients", {"demographics": demographics})
        return str(written["patient_id"])

    def mrn(self, patient_id: str) -> str:
        return str(self.desk.get(f"/api/v1/patients/{patient_id}")["mrn"])

    def physician_id(self, name: str) -> str:
        return str(
            next(
                s["account_id"]
                for s in self.desk.get("/api/v1/directory", role="physician")["staff"]
                if s["display_name"] == name
            )
        )

    def token(self, role: str) -> dict[str, Any]:
        issued: dict[str, Any] = self.admin.post("/api/v1/tokens", {"role": role})
        return issued


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    require_browser()
    # A day at the desk reads many patients' names in a few seconds: more than a person's
    # patient-data bucket (30 at once, 1/s) holds; that bucket is tested in tests/gateway.
    with web_mesh(
        "desk", tmp_path_factory.mktemp("desklogs"), MEDIHAVEN_RATE_PATIENT_CAPACITY="1000"
    ) as mesh:
        yield mesh


@pytest.fixture(scope="module")
def clinic(world: Mesh) -> Desk:
    return Desk(world)


@pytest.fixture(scope="module")
def browser(clinic: Desk) -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def contexts() -> list[BrowserContext]:
    return []


@pytest.fixture(scope="module")
def rosa(clinic: Desk, browser: Browser, contexts: list[BrowserContext]) -> Page:
    """A receptionist whose browser is in New York (the clinic is in Berlin)."""
    page = new_page(contexts, browser, timezone_id="America/New_York")
    register(page, clinic.world.url, clinic.token("receptionist")["token"], "rosa", "Rosa Desk")
    return page


@pytest.fixture(scope="module")
def berg(clinic: Desk) -> str:
    """Dr. Berg, registered with the SDK (the desk keeps her calendar)."""
    return clinic.world.register(clinic.token("physician")["token"], "dr-berg").account_id


def free_times(page: Page) -> Any:
    return page.get_by_role("group", name=re.compile(r"^Free times on"))


def test_working_time_hours_per_weekday_a_lunch_break_and_a_holiday(
    clinic: Desk, rosa: Page, berg: str
) -> None:
    from playwright.sync_api import expect

    page = rosa
    tab(page, "Working time")
    page.get_by_label("Physician").select_option(label="Dr-Berg")
    hours = page.get_by_role("region", name="Working hours")
    for day in WEEKDAYS:
        hours.get_by_role("button", name=f"Add hours on {day}").click()
        hours.get_by_label(f"{day} from").fill("08:00")
        hours.get_by_label(f"{day} until").fill("20:00")
    # inverted hours are one sentence, under the hours, naming the days
    hours.get_by_label("Monday until").fill("07:00")
    hours.get_by_role("button", name="Save working hours").click()
    problem = hours.locator(".field-error")
    expect(problem).to_have_text(
        f"The working hours 08:00{DASH}07:00 on Monday end before they start (for work past "
        "midnight, end at 24:00 and go on from 00:00 the next day)."
    )
    expect(page.get_by_text("end before they start")).to_have_count(1)
    hours.get_by_label("Monday until").fill("20:00")
    hours.get_by_role("button", name="Save working hours").click()
    expect(hours.get_by_text("Working hours saved.")).to_be_visible()
    breaks = page.get_by_role("region", name="Breaks")
    for day in WEEKDAYS:
        breaks.get_by_role("button", name=f"Add a break on {day}").click()  # 12:30 to 13:30
    breaks.get_by_role("button", name="Save breaks").click()
    expect(breaks.get_by_text("Breaks saved.")).to_be_visible()

    availability = clinic.desk.get(f"/api/v1/physicians/{berg}/availability")
    assert {(p["weekday"], p["start"], p["end"]) for p in availability["weekly"]} == {
        (d.lower(), "08:00", "20:00") for d in WEEKDAYS
    }
    assert {(p["start"], p["end"]) for p in availability["breaks"]} == {("12:30", "13:30")}

    # a holiday in three days: that day has no free time in the day grid
    holiday = clinic_now().date() + timedelta(days=3)
    absences = page.get_by_role("region", name="Absences and days off")
    absences.get_by_label("Kind of absence").select_option("holiday")
    absences.get_by_label("First day").fill(holiday.isoformat())
    absences.get_by_role("button", name="Add absence").click()
    expect(absences.get_by_text("Absence added.")).to_be_visible()
    expect(absences.get_by_role("list", name="Absences")).to_contain_text("holiday")
    tab(page, "Calendar")
    page.get_by_label("Physician", exact=True).select_option(label="Dr-Berg")
    page.get_by_label("Day", exact=True).fill(holiday.isoformat())
    expect(page.get_by_text("Dr-Berg does not work on this day.")).to_be_visible()
    expect(free_times(page)).to_have_count(0)


def test_book_an_afternoon_slot_from_the_day_grid_and_move_it(
    clinic: Desk, rosa: Page, berg: str
) -> None:
    from playwright.sync_api import expect

    page = rosa
    tomorrow = clinic_now().date() + timedelta(days=1)
    tab(page, "Patients")
    finder = page.get_by_role("region", name="Find a patient")
    finder.get_by_label("or record number").fill(clinic.mrn(clinic.amara))
    finder.get_by_role("button", name="Search").click()
    finder.get_by_role("table", name="Patients found").get_by_role("button", name="Book").click()
    expect(page.get_by_role("heading", name="Physicians' calendars")).to_be_visible()
    page.get_by_label("Physician", exact=True).select_option(label="Dr-Berg")
    page.get_by_label("Day", exact=True).fill(tomorrow.isoformat())
    grid = free_times(page)
    # every free start of the day is a button: the morning, the afternoon after lunch, the evening
    expect(grid.get_by_role("button")).to_have_count(22)  # 08:00 to 12:00, 13:30 to 19:30
    starts = grid.get_by_role("button").all_inner_texts()
    assert starts[0] == "08:00" and starts[-1] == "19:30", starts
    assert "12:00" in starts and "12:30" not in starts and "13:00" not in starts  # lunch
    grid.get_by_role("button", name="15:00", exact=True).click()
    page.get_by_label("Reason for visit").fill("Asthma review")
    page.get_by_role("button", name="Book appointment").click()
    day = f"{tomorrow:%a} {tomorrow.day} {tomorrow:%b}"
    expect(page.get_by_text(f"Booked Amara Okonkwo with Dr-Berg on {day}, 15:00.")).to_be_visible()
    expect(grid.get_by_role("button", name="15:00", exact=True)).to_have_count(0)
    booked = clinic.desk.get(f"/api/v1/physicians/{berg}/calendar", day=tomorrow.isoformat())
    (appointment,) = booked["appointments"]
    start = datetime.fromisoformat(appointment["start"]).astimezone(CLINIC)
    assert (start.date(), start.hour, start.minute) == (tomorrow, 15, 0)  # the clinic's 15:00

    # moved through the same grid
    week = page.get_by_role("grid", name="Week view")
    card = week.get_by_test_id("appointment").filter(has_text="Asthma review")
    expect(card).to_contain_text("Amara Okonkwo")
    card.get_by_role("button", name="Reschedule").click()
    expect(page.get_by_role("heading", name="Move the appointment of")).to_be_visible()
    grid.get_by_role("button", name="16:30", exact=True).click()
    expect(page.get_by_text(f"Appointment moved to {day}, 16:30.")).to_be_visible()
    expect(card).to_contain_text(f"16:30{DASH}17:00")
    expect(grid.get_by_role("button", name="15:00", exact=True)).to_be_visible()  # free again

    # a cancelled appointment stays on the calendar with its reason
    grid.get_by_role("button", name="18:00", exact=True).click()
    page.get_by_label("Reason for visit").fill("Follow-up")
    page.get_by_role("button", name="Book appointment").click()
    expect(page.get_by_text(f"on {day}, 18:00.")).to_be_visible()
    second = week.get_by_test_id("appointment").filter(has_text="Follow-up")
    second.get_by_role("button", name="Cancel", exact=True).click()
    second.get_by_label("Reason for cancelling").fill("Patient called to cancel")
    second.get_by_role("button", name="Cancel appointment").click()
    expect(page.get_by_text("Appointment cancelled.")).to_be_visible()
    expect(second).to_contain_text("cancelled: Patient called to cancel")
    expect(grid.get_by_role("button", name="18:00", exact=True)).to_be_visible()
    screenshot(page, "receptionist-day-grid")


def test_a_colleagues_booking_appears_live_in_a_second_receptionists_browser(
    clinic: Desk, rosa: Page, berg: str, browser: Browser, contexts: list[BrowserContext]
) -> None:
    from playwright.sync_api import expect

    other = new_page(contexts, browser, timezone_id="Asia/Tokyo")
    register(other, clinic.world.url, clinic.token("receptionist")["token"], "paul", "Paul Desk")
    expect(other.get_by_text("live", exact=True)).to_be_visible()
    tomorrow = clinic_now().date() + timedelta(days=1)
    tab(other, "Calendar")
    other.get_by_label("Physician", exact=True).select_option(label="Dr-Berg")
    other.get_by_label("Day", exact=True).fill(tomorrow.isoformat())
    theirs = free_times(other)
    expect(theirs.get_by_role("button", name="10:00", exact=True)).to_be_visible()

    # Rosa books 10:00 for a new patient; Paul's screen follows without a reload
    chidi = clinic.patient("Chidi", "Okafor", "1979-08-21")
    tab(rosa, "Patients")
    finder = rosa.get_by_role("region", name="Find a patient")
    finder.get_by_label("or record number").fill(clinic.mrn(chidi))
    finder.get_by_role("button", name="Search").click()
    finder.get_by_role("table", name="Patients found").get_by_role("button", name="Book").click()
    rosa.get_by_label("Day", exact=True).fill(tomorrow.isoformat())
    free_times(rosa).get_by_role("button", name="10:00", exact=True).click()
    rosa.get_by_label("Reason for visit").fill("Knee pain")
    rosa.get_by_role("button", name="Book appointment").click()
    expect(rosa.get_by_text("Booked Chidi Okafor with Dr-Berg")).to_be_visible()

    expect(theirs.get_by_role("button", name="10:00", exact=True)).to_have_count(0)
    week = other.get_by_role("grid", name="Week view")
    expect(week.get_by_test_id("appointment").filter(has_text="Knee pain")).to_contain_text(
        f"10:00{DASH}10:30"  # the clinic's time, in a browser in Tokyo
    )
    expect(week).to_contain_text("Chidi Okafor")
    other.context.close()
    contexts.remove(other.context)


def test_schmitt_finds_schmidt_and_registration_warns_with_the_names(
    clinic: Desk, rosa: Page
) -> None:
    from playwright.sync_api import expect

    page = rosa
    clinic.patient("Anna", "Schmidt", "1962-05-14", phone="+49 30 1234567")
    tab(page, "Patients")
    finder = page.get_by_role("region", name="Find a patient")
    finder.get_by_label("Family name").fill("Schmitt")
    finder.get_by_label("Date of birth").fill("1962-05-14")
    finder.get_by_role("button", name="Search").click()
    found = finder.get_by_role("table", name="Patients found")
    expect(found.locator("tbody tr")).to_have_count(1)
    expect(found).to_contain_text("Anna Schmidt")
    expect(found).to_contain_text("similar spelling")

    # the phone as the patient says it, in the clinic's region's notation
    finder.get_by_label("Family name").fill("")
    finder.get_by_label("Date of birth").fill("")
    finder.get_by_label("or phone").fill("030 1234567")
    finder.get_by_role("button", name="Search").click()
    expect(found.locator("tbody tr")).to_have_count(1)
    expect(found).to_contain_text("Anna Schmidt")
    found.get_by_role("button", name="Demographics").click()
    expect(page.get_by_role("region", name="Demographics")).to_contain_text("+49 30 1234567")

    # registering "Anna Schmitt" born the same day: warned, with the existing record's name
    form = page.get_by_role("region", name="Register a patient")
    form.get_by_label("Given name").fill("Anna")
    form.get_by_label("Family name").fill("Schmitt")
    form.get_by_label("Date of birth").fill("1962-05-14")
    form.get_by_label("Sex").select_option("female")
    form.get_by_role("button", name="Register patient").click()
    warning = page.get_by_role("alert", name="Possible duplicate")
    expect(warning).to_contain_text("already registered")
    existing = warning.get_by_role("list", name="Existing records")
    expect(existing).to_contain_text("Anna Schmidt, born 1962-05-14")
    screenshot(page, "receptionist-duplicate")
    warning.get_by_role("button", name="This is a different person: register anyway").click()
    expect(form.get_by_text("Registered Anna Schmitt: record number MH-")).to_be_visible()
    expect(page.get_by_role("table", name="Recently seen patients")).to_contain_text("Anna Schmitt")


def test_edit_demographics_and_a_field_error_reads_as_a_sentence(clinic: Desk, rosa: Page) -> None:
    from playwright.sync_api import expect

    page = rosa
    tab(page, "Patients")
    finder = page.get_by_role("region", name="Find a patient")
    finder.get_by_label("or phone").fill("")
    finder.get_by_label("or record number").fill(clinic.mrn(clinic.amara))
    finder.get_by_role("button", name="Search").click()
    finder.get_by_role("table", name="Patients found").get_by_role(
        "button", name="Demographics"
    ).click()
    page.get_by_role("button", name="Edit demographics").click()
    edit = page.get_by_role("region", name=re.compile("^Edit Amara Okonkwo"))
    edit.get_by_label("Insurance company").fill("AOK Nordost")
    edit.get_by_label("Member number").fill("A123456789")
    edit.get_by_label("Valid until").fill("2027-12-31")
    edit.get_by_label("Contact's name").fill("Ngozi Okonkwo")
    edit.get_by_label("Relationship").fill("sister")
    edit.get_by_label("Contact's number").fill("call me")
    edit.get_by_role("button", name="Save changes").click()
    sentence = "A phone number has digits, an optional leading +, and ( ) . - / spaces."
    under = edit.get_by_label("Contact's number").locator("xpath=..").locator(".field-error")
    expect(under).to_have_text(sentence)
    expect(page.get_by_text(sentence)).to_have_count(1)  # once, under its field
    expect(
        edit.get_by_role("alert").filter(has_text="Some entries need correcting")
    ).to_be_visible()
    assert "Value error" not in page.content() and "demographics." not in edit.inner_text()

    edit.get_by_label("Contact's number").fill("0171 2345678")
    edit.get_by_role("button", name="Save changes").click()
    card = page.get_by_role("region", name="Demographics")
    expect(card).to_contain_text("AOK Nordost, member A123456789 (valid until 2027-12-31)")
    expect(card).to_contain_text("Ngozi Okonkwo (sister), +49 171 2345678")
    stored = clinic.desk.get(f"/api/v1/patients/{clinic.amara}")
    assert stored["version"] == 2
    assert stored["demographics"]["insurance"]["member_id"] == "A123456789"
    assert stored["demographics"]["emergency_contact"]["phone"] == "+49 171 2345678"


def _next_minute() -> datetime:
    now = datetime.now(UTC)
    return datetime.fromtimestamp(math.ceil(now.timestamp() / 60) * 60 + 60, UTC)


def test_today_check_in_no_show_and_the_physician_starts_and_finishes(
    clinic: Desk, rosa: Page, browser: Browser, contexts: list[BrowserContext]
) -> None:
    from playwright.sync_api import expect

    if clinic_now() + timedelta(minutes=20) > datetime.combine(
        clinic_now().date() + timedelta(days=1), datetime.min.time(), CLINIC
    ):
        pytest.skip("too close to midnight in the clinic for appointments later today")
    doctor = new_page(contexts, browser, timezone_id="Pacific/Auckland")
    register(
        doctor,
        clinic.world.url,
        clinic.token("physician")["token"],
        "dr-ito",
        "Dr. Kenji Ito",
        specialty="General practice",
    )
    ito = clinic.physician_id("Dr. Kenji Ito")
    clinic.desk.put(f"/api/v1/physicians/{ito}/working-hours", {"weekly": ALL_WEEK})
    lena = clinic.patient("Lena", "Vogt", "1990-01-30")
    tom = clinic.patient("Tom", "Berger", "1955-11-11")
    first = _next_minute()

    def book(patient: str, start: datetime, reason: str) -> dict[str, Any]:
        booked: dict[str, Any] = clinic.desk.post(
            "/api/v1/appointments",
            {
                "patient_id": patient,
                "physician_id": ito,
                "start": start.isoformat(),
                "end": (start + timedelta(minutes=10)).isoformat(),
                "reason": reason,
            },
        )
        return booked

    missed = book(lena, first, "Blood test")  # her time comes in a minute or two
    visit = book(clinic.amara, first + timedelta(minutes=10), "Asthma check")
    cancelled = book(tom, first + timedelta(minutes=20), "Flu shot")
    clinic.desk.post(
        f"/api/v1/appointments/{cancelled['appointment_id']}/cancel", {"reason": "Feels better"}
    )

    page = rosa
    tab(page, "Today")
    page.get_by_label("Physician", exact=True).select_option(label="Dr. Kenji Ito")
    today = page.get_by_role("table", name="Today with Dr. Kenji Ito")
    row = {
        "visit": today.locator(f'tr[data-patient="{clinic.amara}"]'),
        "missed": today.locator(f'tr[data-patient="{lena}"]'),
        "cancelled": today.locator(f'tr[data-patient="{tom}"]'),
    }
    expect(row["visit"]).to_contain_text(clinic_time(visit["start"]).split(", ")[1])
    expect(row["visit"]).to_contain_text("Amara Okonkwo, 42 years")
    expect(row["cancelled"].get_by_test_id("appointment-status")).to_have_text(
        "cancelled: Feels better"
    )
    expect(row["missed"].get_by_test_id("appointment-status")).to_have_text("booked")
    row["visit"].get_by_role("button", name="Check in").click()
    expect(page.get_by_text("Amara Okonkwo checked in for")).to_be_visible()
    expect(row["visit"].get_by_test_id("appointment-status")).to_have_text("arrived")

    # the physician hears of it, starts and finishes the visit from the day view
    expect(doctor.get_by_role("complementary", name="Notifications")).to_contain_text(
        "has arrived for"
    )
    mine = doctor.get_by_role("table", name="Appointments")
    theirs = mine.locator("tr", has_text="Asthma check")
    expect(theirs.get_by_test_id("appointment-status")).to_have_text("arrived")
    theirs.get_by_role("button", name="Start visit").click()
    expect(theirs.get_by_test_id("appointment-status")).to_have_text("in progress")
    expect(row["visit"].get_by_test_id("appointment-status")).to_have_text("in progress")
    theirs.get_by_role("button", name="Finish visit").click()
    expect(theirs.get_by_test_id("appointment-status")).to_have_text("done")
    expect(row["visit"].get_by_test_id("appointment-status")).to_have_text("done")
    expect(mine.locator("tr", has_text="Flu shot")).to_contain_text("cancelled: Feels better")

    # once her time has come (the list sees the clock move), Lena is a no-show
    no_show = row["missed"].get_by_role("button", name="No-show")
    expect(no_show).to_be_visible(timeout=150_000)
    no_show.click()
    expect(row["missed"].get_by_test_id("appointment-status")).to_have_text("no-show")
    expect(row["missed"]).to_contain_text("Blood test")
    screenshot(page, "receptionist-today")
    assert (
        clinic.desk.get(f"/api/v1/appointments/{missed['appointment_id']}")["status"] == "no_show"
    )


def test_administrator_loads_the_catalog_follows_the_audit_and_confirms_a_disable(
    clinic: Desk, browser: Browser, contexts: list[BrowserContext]
) -> None:
    from playwright.sync_api import expect

    page = new_page(contexts, browser, timezone_id="America/Los_Angeles")
    issued = clinic.token("administrator")
    register(page, clinic.world.url, issued["token"], "ada", "Ada Lovelace")

    # the token list: who registered with each token, times in the clinic's zone
    tokens = page.get_by_role("table", name="Registration tokens")
    mine = tokens.locator("tr", has_text=issued["token_id"][:8])
    expect(mine.get_by_test_id("token-used-by")).to_have_text("Ada Lovelace (administrator)")
    listed = clinic.admin.get("/api/v1/tokens")["tokens"]
    created = next(t["created_at"] for t in listed if t["token_id"] == issued["token_id"])
    expect(mine).to_contain_text(clinic_time(created))

    # the catalog: empty at first, then the sample, loaded once
    tab(page, "Catalog")
    medicines = page.get_by_role("table", name="Medicines")
    expect(medicines).to_contain_text("The catalog is empty.")
    expect(page.get_by_role("note", name="Sample catalog")).to_contain_text("Not clinical advice")
    page.get_by_role("button", name="Load the sample catalog").click()
    expect(
        page.get_by_text(re.compile(r"Sample catalog loaded: \d+ added, 0 already"))
    ).to_be_visible()
    expect(medicines).to_contain_text("Amoxicillin")
    assert clinic.admin.get("/api/v1/catalog/medicines", prefix="amox")["medicines"]
    page.get_by_role("button", name="Load the sample catalog").click()
    expect(
        page.get_by_text(re.compile(r"Sample catalog loaded: 0 added, \d+ already"))
    ).to_be_visible()
    # an ingredient the drug vocabulary does not know is refused in words, under its field
    add = page.get_by_role("region", name="Add a medicine")
    add.get_by_label("Name", exact=True).fill("Wonderpill")
    add.get_by_label("Active ingredient").fill("unobtainium")
    add.get_by_label("Strength").fill("1 mg")
    add.get_by_role("button", name="Add medicine").click()
    expect(add.locator(".field-error")).to_contain_text("Unobtainium is not in the drug vocabulary")
    # retire one, after saying yes
    row = medicines.locator("tr", has_text="Naproxen")
    row.get_by_role("button", name="Retire…").click()
    row.get_by_role("button", name="Yes, retire it").click()
    expect(page.get_by_text("Naproxen 250 mg retired.")).to_be_visible()
    expect(medicines.locator("tr", has_text="Naproxen")).to_have_count(0)

    # the audit log in words, with the whole patient id, to that record's access history
    clinic.desk.get(f"/api/v1/patients/{clinic.amara}")
    tab(page, "Audit")
    page.get_by_label("Patient id", exact=True).first.fill(clinic.amara)
    page.get_by_role("button", name="Apply filters").click()
    entries = page.get_by_role("table", name="Audit entries")
    expect(entries).to_contain_text(f"{clinic.colleague.account['display_name']} (receptionist)")
    read = entries.locator("tr", has_text="read a patient's demographics").first
    link = read.get_by_role("button", name=f"Access history of patient {clinic.amara}")
    expect(link).to_have_text(clinic.amara)
    link.click()
    history = page.get_by_role("region", name="Patient access history")
    expect(history.get_by_test_id("history-summary")).to_contain_text(
        f"to the record of patient {clinic.amara}"
    )
    # some accesses, never none ("40 accesses" also contains "0 accesses")
    expect(history.get_by_test_id("history-summary")).to_have_text(
        re.compile(r"^[1-9]\d* access(es)? to the record of patient ")
    )
    accesses = history.get_by_role("table", name="Accesses to this record")
    expect(accesses).to_contain_text("registered a patient")
    expect(accesses).to_contain_text("Rosa Desk (receptionist)")
    screenshot(page, "administrator-audit")

    # disabling a colleague asks first; keeping them changes nothing
    tab(page, "Staff")
    username = str(clinic.colleague.account["username"])
    staff_row = page.locator(f'tr[data-username="{username}"]')
    staff_row.get_by_role("button", name=f"Disable {username}", exact=True).click()
    confirm = staff_row.get_by_role("group", name=f"Disable {username}?")
    expect(confirm).to_contain_text("Every request of theirs is refused")
    confirm.get_by_role("button", name="Keep active").click()
    expect(staff_row.get_by_test_id("account-status")).to_have_text("active")
    assert clinic.desk.get("/api/v1/me")["account_id"] == clinic.colleague.account_id
    staff_row.get_by_role("button", name=f"Disable {username}", exact=True).click()
    confirm.get_by_role("button", name=f"Yes, disable {username}").click()
    expect(staff_row.get_by_test_id("account-status")).to_have_text("disabled")
    assert clinic.desk.request("GET", "/api/v1/me").status_code == 401
    staff_row.get_by_role("button", name=f"Enable {username}").click()
    expect(staff_row.get_by_test_id("account-status")).to_have_text("active")

    # a check-in by hand, with a reason (the time clock is down): the row says so at once,
    # and so does the colleague's own state; then the check-out
    staff_row.get_by_role("button", name=f"Check in {username}").click()
    form = staff_row.get_by_role("form", name=f"Check in {username}")
    form.get_by_label("Reason").fill("the time clock at the door is broken")
    form.get_by_label("Place (optional)").fill("Front desk")
    form.get_by_role("button", name="Check in").click()
    expect(staff_row.get_by_test_id("duty")).to_contain_text("On duty since")
    expect(staff_row.get_by_test_id("duty")).to_contain_text("(Front desk)")
    assert clinic.desk.get("/api/v1/me/attendance")["on_duty"] is True
    staff_row.get_by_role("button", name=f"Check out {username}").click()
    form = staff_row.get_by_role("form", name=f"Check out {username}")
    form.get_by_label("Reason").fill("left early, forgot to clock out")
    form.get_by_role("button", name="Check out").click()
    expect(staff_row.get_by_test_id("duty")).to_contain_text("Off duty since")
    assert clinic.desk.get("/api/v1/me/attendance")["on_duty"] is False


def test_no_browser_kept_patient_data_and_the_csp_held(contexts: list[BrowserContext]) -> None:
    if not contexts:
        pytest.skip("checks the browsers the flows above used: run it with them")
    for context in contexts:
        for page in context.pages:
            stored = browser_storage(page)
            for name in PATIENT_NAMES:
                assert name not in stored, (name, stored[:500])
    assert CSP_PROBLEMS == []


def test_dates_here_are_the_clinics() -> None:
    """The helpers above say times as the app does (en-GB, the clinic's zone)."""
    assert clinic_time("2026-12-03T09:00:00+00:00") == "Thu 3 Dec, 10:00"
    assert date(2026, 12, 3).strftime("%a") == "Thu"
