"""The web app keeps its footing (issue 24), in Debian's Chromium against the whole mesh
as real processes: a week of 20 appointments named in one request (not one per patient),
and a prescription signed by a double click made once.

The tests run in order (`-p no:randomly`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from unittest.mock import patch
from zoneinfo import ZoneInfo

import pytest

from cli.sdk import MedihavenClient
from tests.gateway.support import Mesh, Staff
from tests.processes import Process
from tests.web.support import (
    CSP_PROBLEMS,
    WEB_DIR,
    axe_violations,
    browser_storage,
    chromium,
    new_page,
    register,
    require_browser,
    tab,
    web_mesh,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Locator, Page, Request

CLINIC = ZoneInfo("Europe/Berlin")  # the mesh's default MEDIHAVEN_CLINIC_TIMEZONE
ALL_WEEK = [
    {"weekday": d, "start": "00:00", "end": "24:00"}
    for d in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
]
PARACETAMOL = {
    "name": "Paracetamol",
    "active_ingredient": "paracetamol",
    "strength": "500 mg",
    "dosage_form": "tablet",
    "route": "oral",
    "type": "analgesic",
    "default_instructions": "At most 8 tablets in 24 hours.",
}
WEEK_OF_APPOINTMENTS = 20


class Clinic:
    """The people the tests need, set up with the Python SDK before any browser."""

    def __init__(self, world: Mesh) -> None:
        self.world = world
        self.admin = world.admin().client
        self.admin.post("/api/v1/catalog/medicines", {"details": PARACETAMOL})
        self.desk = world.staff("receptionist").client
        self.doctor: Staff = world.staff("physician")
        self.next_monday = next_monday()

    def patient(self, given: str, family: str) -> str:
        demographics = {
            "given_name": given,
            "family_name": family,
            "date_of_birth": "1980-05-17",
            "sex": "female",
        }
        # the week's patients share a birth date and sound alike: different people
        written = self.desk.post(
            "/api/v1/patients", {"demographics": demographics, "confirm_duplicate": True}
        )
        return str(written["patient_id"])

    def token(self, role: str) -> str:
        return str(self.admin.post("/api/v1/tokens", {"role": role})["token"])

    def book(self, physician_id: str, patient_id: str, slot: dict[str, str]) -> None:
        self.desk.post(
            "/api/v1/appointments",
            {
                "patient_id": patient_id,
                "physician_id": physician_id,
                "start": slot["start"],
                "end": slot["end"],
                "reason": "Check-up",
            },
        )

    def slots(self, physician_id: str, first: str, last: str) -> list[dict[str, str]]:
        self.desk.put(f"/api/v1/physicians/{physician_id}/working-hours", {"weekly": ALL_WEEK})
        found: list[dict[str, str]] = self.desk.get(
            f"/api/v1/physicians/{physician_id}/free-slots",
            first_day=first,
            last_day=last,
            limit=200,
        )["slots"]
        now = datetime.now(UTC)
        return [s for s in found if datetime.fromisoformat(s["start"]) > now]


def next_monday() -> str:
    today = datetime.now(CLINIC).date()
    return (today + timedelta(days=7 - today.weekday())).isoformat()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    require_browser()
    # One physician's and one desk's whole morning in a minute, keyboard flows included:
    # more patient-data reads at once than the gateway's bucket for a person (30 at once,
    # 1/s) allows. The bucket is tested in tests/gateway, the app's answer to a 429 in
    # frontend/src/shared/api/client.test.ts, and one list as one request below.
    with web_mesh(
        "footing", tmp_path_factory.mktemp("footinglogs"), MEDIHAVEN_RATE_PATIENT_CAPACITY="1000"
    ) as mesh:
        yield mesh


@pytest.fixture(scope="module")
def clinic(world: Mesh) -> Clinic:
    return Clinic(world)  # before Playwright starts: bootstrapping runs its own event loop


@pytest.fixture(scope="module")
def browser(clinic: Clinic) -> Iterator[Browser]:
    from playwright.sync_api import expect

    expect.set_options(timeout=15_000)  # two cores shared by many: reads may be slow
    with chromium() as launched:
        yield launched
    expect.set_options(timeout=5_000)  # Playwright's default, for the modules after this one


@pytest.fixture(scope="module")
def contexts() -> list[BrowserContext]:
    return []


class Requests:
    """The API requests a page sends (method, path), from when `clear` was last called."""

    def __init__(self, page: Page) -> None:
        self.seen: list[tuple[str, str]] = []
        page.on("request", self._add)

    def _add(self, request: Request) -> None:
        path = request.url.split("?")[0]
        if "/api/v1/" in path:
            self.seen.append((request.method, path.split("/api/v1", 1)[1]))

    def clear(self) -> None:
        self.seen.clear()

    def to(self, fragment: str) -> list[tuple[str, str]]:
        return [r for r in self.seen if fragment in r[1]]


@pytest.fixture(scope="module")
def desk(clinic: Clinic, browser: Browser, contexts: list[BrowserContext]) -> Page:
    page = new_page(contexts, browser)
    register(page, clinic.world.url, clinic.token("receptionist"), "desk-two", "Dana Desk")
    return page


def test_a_week_of_20_appointments_is_named_in_one_request(clinic: Clinic, desk: Page) -> None:
    from playwright.sync_api import expect

    doctor = clinic.doctor.account_id
    monday = clinic.next_monday
    sunday = (datetime.fromisoformat(monday) + timedelta(days=6)).date().isoformat()
    slots = clinic.slots(doctor, monday, sunday)
    # one a few hours apart over the week, for 20 patients
    chosen = slots[:: max(1, len(slots) // WEEK_OF_APPOINTMENTS)][:WEEK_OF_APPOINTMENTS]
    assert len(chosen) == WEEK_OF_APPOINTMENTS
    names = [f"Weekpatient{chr(ord('A') + i)}" for i in range(WEEK_OF_APPOINTMENTS)]
    for family, slot in zip(names, chosen, strict=True):
        clinic.book(doctor, clinic.patient("Ada", family), slot)

    requests = Requests(desk)
    tab(desk, "Calendar")
    desk.get_by_label("Physician", exact=True).select_option(value=doctor)
    expect(desk.get_by_role("status").filter(has_text="Loading the calendar")).to_have_count(0)
    requests.clear()
    desk.get_by_label("Day", exact=True).fill(monday)
    week = desk.get_by_role("grid", name="Week view")
    for family in names:
        expect(week).to_contain_text(f"Ada {family}")
    calendars = requests.to("/calendar")
    briefs = requests.to("/patients")
    assert len(calendars) == 1, requests.seen
    assert briefs == [("POST", "/patients/briefs")], requests.seen


@pytest.fixture(scope="module")
def physician(clinic: Clinic, browser: Browser, contexts: list[BrowserContext]) -> Page:
    page = new_page(contexts, browser)
    register(page, clinic.world.url, clinic.token("physician"), "dr-once", "Dr. Olga Once")
    return page


def physician_id(clinic: Clinic, name: str) -> str:
    return str(
        next(
            s["account_id"]
            for s in clinic.desk.get("/api/v1/directory", role="physician")["staff"]
            if s["display_name"] == name
        )
    )


def test_a_double_click_on_sign_makes_one_prescription(clinic: Clinic, physician: Page) -> None:
    from playwright.sync_api import expect

    page = physician
    me = physician_id(clinic, "Dr. Olga Once")
    patient = clinic.patient("Rhea", "Twiceclick")
    today = datetime.now(UTC).date()
    window = (today.isoformat(), (today + timedelta(days=6)).isoformat())
    clinic.book(me, patient, clinic.slots(me, *window)[0])  # the chart opens to her
    colleague = clinic.doctor
    clinic.book(colleague.account_id, patient, clinic.slots(colleague.account_id, *window)[-1])
    colleague.client.post(
        f"/api/v1/patients/{patient}/encounters",
        {
            "content": {
                "occurred_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
                "chief_complaint": "Headache",
            }
        },
    )
    mrn = clinic.desk.get(f"/api/v1/patients/{patient}")["mrn"]
    tab(page, "Chart")
    finder = page.get_by_role("region", name="Find a patient")
    finder.get_by_label("or record number").fill(mrn)
    finder.get_by_role("button", name="Search").click()
    finder.get_by_role("button", name="Open chart").click()
    rx = page.get_by_role("region", name="E-prescription")
    rx.get_by_label("Search the medicine catalog").fill("parac")
    rx.get_by_role("listbox", name="Suggestions").get_by_role("option").first.click()
    expect(rx.get_by_test_id("safety-clear")).to_be_visible()
    rx.get_by_label("Dose").fill("1 tablet")
    rx.get_by_label("Frequency").fill("as needed")
    rx.get_by_label("Days").fill("3")
    rx.get_by_label("Quantity").fill("10")
    requests = Requests(page)
    sign = rx.get_by_role("button", name="Sign and prescribe")
    # submitted twice in the same instant, before the page can re-render (and disable the
    # button) between the two
    sign.evaluate("button => { button.form.requestSubmit(); button.form.requestSubmit(); }")
    expect(rx.get_by_text("Prescription of Paracetamol 500 mg signed and sent.")).to_be_visible()
    listed = colleague.client.get(f"/api/v1/patients/{patient}/prescriptions")["prescriptions"]
    assert len(listed) == 1, listed
    posts = [r for r in requests.seen if r == ("POST", "/prescriptions")]
    assert len(posts) == 1, requests.seen


GATEWAY_ENV = {  # as web_mesh starts it
    "MEDIHAVEN_WEB_DIR": str(WEB_DIR),
    "MEDIHAVEN_WEB_AUTO_LOCK_S": "3600",
    "MEDIHAVEN_RATE_ANONYMOUS_CAPACITY": "10000",
}
LOST = "The connection to the server is lost"
BACK = "The connection is back"


def clock_of(instant: str) -> str:
    """An ISO instant as the app shows it: the clinic's wall clock, "09:30"."""
    return datetime.fromisoformat(instant).astimezone(CLINIC).strftime("%H:%M")


def started_gateway(world: Mesh, port: int | None = None) -> Process:
    """A gateway of this mesh (on `port`: the stopped one's, where the browsers are; its
    log in a folder of its own)."""
    log_dir = world.log_dir / f"gateway-{len(world.extra_gateways)}"
    log_dir.mkdir(exist_ok=True)
    with patch("tests.processes.free_port", return_value=port) if port else nullcontext():
        proc = Process("gateway", world.settings, log_dir, **GATEWAY_ENV)
    world.extra_gateways.append(proc)  # stopped with the mesh
    proc.wait_ready(timeout=120)  # two cores shared by many: a start may take a while
    return proc


def test_the_gateway_stops_and_restarts_while_screens_are_open(
    clinic: Clinic, world: Mesh, desk: Page, physician: Page
) -> None:
    """The banner says the connection is lost and when it is back; a load while it is
    lost is an error (never "No physician registered yet"); what was booked meanwhile
    (through another gateway) is on both calendars afterwards, without Refresh. The
    physician's page, which never got a chat message, has a booking, a move, a
    cancellation and a message made during the outage replayed by the live channel: each
    notice once, in order, and the Chat tab's unread badge."""
    from playwright.sync_api import expect

    me = physician_id(clinic, "Dr. Olga Once")
    monday = clinic.next_monday
    sunday = (datetime.fromisoformat(monday) + timedelta(days=6)).date().isoformat()
    olga_slots = clinic.slots(me, monday, sunday)
    desk_slots = clinic.slots(clinic.doctor.account_id, monday, sunday)
    tab(physician, "Calendar")
    physician.get_by_role("button", name="Week", exact=True).click()
    physician.get_by_label("Go to date").fill(monday)
    expect(physician.get_by_role("grid", name="Week view")).to_be_visible()
    week = desk.get_by_role("grid", name="Week view")
    expect(week).to_contain_text("Ada WeekpatientA")
    for page in (desk, physician):
        expect(page.get_by_text("live", exact=True)).to_be_visible()
    notices = physician.get_by_role("complementary", name="Notifications")
    while notices.get_by_role("button", name="Dismiss").count():
        notices.get_by_role("button", name="Dismiss").first.click()
    expect(physician.get_by_role("img", name=re.compile("unread"))).to_have_count(0)

    port = world.gateway.port
    world.gateway.stop()
    for page in (desk, physician):
        expect(page.get_by_role("status").filter(has_text=LOST)).to_be_visible()
    # the desk moves on meanwhile: every read fails, and says so
    tab(desk, "Today")
    tab(desk, "Calendar")
    expect(
        desk.get_by_role("alert").filter(has_text="list of physicians could not be loaded")
    ).to_be_visible()
    calendar = desk.get_by_role("region", name="Physicians' calendars")
    expect(
        calendar.get_by_role("alert").filter(has_text=re.compile("^The gateway cannot be reached"))
    ).to_be_visible()
    expect(desk.get_by_text("No physician registered yet")).to_have_count(0)
    expect(week).to_have_count(0)  # no week shown as if it were this one

    # a colleague books through another gateway while these pages are cut off
    other = started_gateway(world)
    colleague = MedihavenClient(other.url, clinic.desk.key_id, clinic.desk.private_key)
    for doctor, slots, family in (
        (clinic.doctor.account_id, desk_slots, "Duringdrop"),
        (me, olga_slots, "Alsodrop"),
    ):
        patient = colleague.post(
            "/api/v1/patients",
            {
                "demographics": {
                    "given_name": "Ida",
                    "family_name": family,
                    "date_of_birth": "1975-01-02",
                    "sex": "female",
                },
                "confirm_duplicate": True,
            },
        )["patient_id"]
        slot = slots[1]  # early next week: within the physician's care window (7 days)
        booked = colleague.post(
            "/api/v1/appointments",
            {
                "patient_id": patient,
                "physician_id": doctor,
                "start": slot["start"],
                "end": slot["end"],
                "reason": "Booked while the gateway was down",
            },
        )
    # Olga's booking is moved, another one booked and cancelled, and she gets a message
    later = [s for s in olga_slots if s["start"] >= slot["end"]]
    moved_to = later[0]
    colleague.post(
        f"/api/v1/appointments/{booked['appointment_id']}/reschedule",
        {"start": moved_to["start"], "end": moved_to["end"]},
    )
    gone = next(s for s in later if s["start"] >= moved_to["end"])
    cancelled = colleague.post(
        "/api/v1/appointments",
        {
            "patient_id": patient,
            "physician_id": me,
            "start": gone["start"],
            "end": gone["end"],
            "reason": "Booked and cancelled while the gateway was down",
        },
    )
    colleague.post(
        f"/api/v1/appointments/{cancelled['appointment_id']}/cancel",
        {"reason": "The patient called off"},
    )
    chat = colleague.post("/api/v1/chat/direct", {"other_account_id": me})["conversation_id"]
    colleague.post(
        f"/api/v1/chat/conversations/{chat}/messages", {"text": "Sent while you were cut off"}
    )

    world.gateway = started_gateway(world, port)
    for page in (desk, physician):
        expect(page.get_by_role("status").filter(has_text=BACK)).to_be_visible(timeout=45_000)
    expect(week).to_contain_text("Ida Duringdrop", timeout=20_000)
    expect(week).to_contain_text("Ada WeekpatientA")
    expect(desk.get_by_label("Physician", exact=True)).to_have_value(clinic.doctor.account_id)
    expect(physician.get_by_role("grid", name="Week view")).to_contain_text(
        "Ida Alsodrop", timeout=20_000
    )
    # replayed, not only read again: one notice per event, in order (newest first)
    expect(notices.locator("p")).to_have_text(
        [
            re.compile("^The appointment.* was cancelled"),
            re.compile("^New appointment booked"),
            re.compile("^An appointment.* moved to"),
            re.compile("^New appointment booked"),
        ],
        timeout=20_000,
    )
    moved_cell = physician.get_by_role(
        "gridcell", name=re.compile(re.escape(clock_of(moved_to["start"])) + " Ida Alsodrop")
    )
    expect(moved_cell).to_have_count(1)
    gone_name = re.escape(clock_of(gone["start"])) + " Ida Alsodrop.*cancelled: The patient"
    expect(physician.get_by_role("gridcell", name=re.compile(gone_name))).to_have_count(1)
    expect(physician.get_by_role("navigation").get_by_role("img", name="1 unread")).to_be_visible()
    for page in (desk, physician):
        expect(page.get_by_text(LOST)).to_have_count(0)
        expect(page.get_by_text(BACK)).to_have_count(0, timeout=15_000)  # and it clears


def test_half_typed_forms_survive_a_section_switch(desk: Page, physician: Page) -> None:
    """Registration, encounter and prescription drafts are kept in memory while the user
    looks at another section (never in browser storage: checked below)."""
    from playwright.sync_api import expect

    tab(desk, "Patients")
    register = desk.get_by_role("region", name="Register a patient")
    register.get_by_label("Given name").fill("Halfway")
    register.get_by_label("Family name").fill("Typedname")
    tab(desk, "Calendar")
    tab(desk, "Patients")
    expect(register.get_by_label("Given name")).to_have_value("Halfway")
    expect(register.get_by_label("Family name")).to_have_value("Typedname")

    tab(physician, "Chart")  # the chart opened before (the double click's patient)
    encounter = physician.get_by_role("region", name="Record an encounter")
    encounter.get_by_label("Chief complaint").fill("Halfway through a note")
    rx = physician.get_by_role("region", name="E-prescription")
    rx.get_by_label("Search the medicine catalog").fill("parac")
    rx.get_by_role("listbox", name="Suggestions").get_by_role("option").first.click()
    rx.get_by_label("Dose").fill("2 tablets")
    tab(physician, "Calendar")
    tab(physician, "Chart")
    expect(encounter.get_by_label("Chief complaint")).to_have_value("Halfway through a note")
    expect(rx.get_by_label("Dose")).to_have_value("2 tablets")


def test_skip_links_go_to_each_sections_main_form(desk: Page, physician: Page) -> None:
    from playwright.sync_api import expect

    for page, section, link, heading in (
        (desk, "Patients", "Skip to Register a patient", "Register a patient"),
        (desk, "Calendar", "Skip to the free times and booking", re.compile("^Free times")),
        (physician, "Chart", "Skip to E-prescription", "E-prescription"),
    ):
        tab(page, section)
        skip = page.get_by_role("link", name=link)
        skip.focus()
        expect(skip).to_be_visible()  # shown once it has the focus
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name=heading)).to_be_focused()


def tab_to(page: Page, target: Locator, limit: int = 40) -> None:
    """Press Tab until `target` has the focus (keyboard only; fails after `limit` presses)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if target.evaluate("e => e === document.activeElement"):
            return
    raise AssertionError(f"{target} not reached in {limit} Tabs")


def key_section(page: Page, name: str) -> None:
    """Open a section from the keyboard (its button in the nav, then Enter)."""
    page.get_by_role("navigation", name="Sections").get_by_role("button", name=name).focus()
    page.keyboard.press("Enter")


def test_arrow_keys_move_through_the_week_grids(desk: Page, physician: Page) -> None:
    """One Tab stop per grid (the active day), arrow keys and Home/End between the days,
    Enter opens the day; each cell is named by its bookings."""
    from playwright.sync_api import expect

    key_section(desk, "Calendar")
    week = desk.get_by_role("grid", name="Week view")
    cells = week.get_by_role("gridcell")
    expect(cells).to_have_count(7)
    expect(week.locator("[role=gridcell][tabindex='0']")).to_have_count(1)
    expect(cells.nth(0)).to_have_accessible_name(
        re.compile(r"^Free times on \w+ \d+ \w+ ?: \d+ appointments?:.*Ada Weekpatient")
    )
    # the other days' controls are out of the Tab order: Tab does not walk the whole week
    expect(cells.nth(3).get_by_role("button").first).to_have_attribute("tabindex", "-1")
    week.locator("[role=gridcell][tabindex='0']").focus()
    cells.nth(0).focus()
    for key, index in (("ArrowRight", 1), ("ArrowLeft", 0), ("End", 6), ("Home", 0)):
        desk.keyboard.press(key)
        expect(cells.nth(index)).to_be_focused()
        expect(cells.nth(index)).to_have_attribute("tabindex", "0")
    desk.keyboard.press("ArrowRight")
    desk.keyboard.press("ArrowRight")
    expect(cells.nth(2)).to_be_focused()
    desk.keyboard.press("Enter")  # that day's free times
    expect(cells.nth(2)).to_have_attribute("aria-selected", "true")
    wednesday = datetime.fromisoformat(desk.get_by_label("Day", exact=True).input_value())
    assert wednesday.weekday() == 2, wednesday

    key_section(physician, "Calendar")
    mine = physician.get_by_role("grid", name="Week view")
    days = mine.get_by_role("gridcell")
    expect(days).to_have_count(7)
    expect(days.filter(has_text="Ida Alsodrop").first).to_have_accessible_name(
        re.compile(r"\d\d:\d\d Ida Alsodrop")
    )
    mine.locator("[role=gridcell][tabindex='0']").focus()
    physician.keyboard.press("Home")
    expect(days.nth(0)).to_be_focused()
    physician.keyboard.press("ArrowRight")
    expect(days.nth(1)).to_be_focused()
    physician.keyboard.press("Enter")  # the day view of Tuesday
    expect(mine).to_have_count(0)
    expect(physician.get_by_role("button", name="Week", exact=True)).to_have_attribute(
        "aria-pressed", "false"
    )
    physician.get_by_role("button", name="Week", exact=True).focus()
    physician.keyboard.press("Enter")
    expect(mine).to_be_visible()


def test_a_booking_from_the_keyboard_alone(clinic: Clinic, desk: Page) -> None:
    """Day, free time (arrow keys within the day's one Tab stop), patient, reason, book:
    every step by keys, focus where the next step is (the skip link's heading, the reason
    once the patient is chosen, the success message after booking)."""
    from playwright.sync_api import expect

    patient = clinic.patient("Kim", "Keyboardbook")
    mrn = clinic.desk.get(f"/api/v1/patients/{patient}")["mrn"]
    key_section(desk, "Calendar")
    week = desk.get_by_role("grid", name="Week view")
    week.locator("[role=gridcell][tabindex='0']").focus()
    desk.keyboard.press("Home")
    desk.keyboard.press("ArrowRight")
    desk.keyboard.press("Enter")  # Tuesday's free times
    expect(week.get_by_role("gridcell").nth(1)).to_have_attribute("aria-selected", "true")
    expect(desk.get_by_role("status").filter(has_text="Loading the calendar")).to_have_count(0)

    desk.get_by_role("link", name="Skip to the free times and booking").focus()
    desk.keyboard.press("Enter")
    expect(desk.get_by_role("heading", name=re.compile("^Free times"))).to_be_focused()
    free = desk.get_by_role("group", name=re.compile("^Free times on"))
    first = free.get_by_role("button").first
    tab_to(desk, first, 10)  # one Tab stop for the day's free times
    desk.keyboard.press("ArrowRight")
    second = free.get_by_role("button").nth(1)
    expect(second).to_be_focused()
    slot = second.inner_text()
    desk.keyboard.press("Enter")
    chosen = free.get_by_role("button", name=slot, exact=True)
    expect(chosen).to_have_attribute("aria-pressed", "true")

    book = desk.get_by_role("region", name="Book")
    tab_to(desk, book.get_by_label("or record number"), 15)
    desk.keyboard.press("ControlOrMeta+A")
    desk.keyboard.type(mrn)
    desk.keyboard.press("Enter")
    choose = book.get_by_role("button", name="Choose")
    expect(choose).to_have_count(1)
    tab_to(desk, choose, 15)
    desk.keyboard.press("Enter")
    reason = book.get_by_label("Reason for visit")
    expect(reason).to_be_focused()  # the next step, not the page
    desk.keyboard.type("Booked from the keyboard")
    tab_to(desk, book.get_by_role("button", name="Book appointment"), 5)
    desk.keyboard.press("Enter")
    done = book.get_by_role("status").filter(has_text=re.compile("^Booked Kim Keyboardbook"))
    expect(done).to_be_focused()
    expect(done).to_contain_text(slot)


def test_an_encounter_from_the_keyboard_alone(clinic: Clinic, physician: Page) -> None:
    """Find the patient, open the chart (focus on its heading), skip to the encounter
    form, write and record it (focus on the success message)."""
    from playwright.sync_api import expect

    me = physician_id(clinic, "Dr. Olga Once")
    monday = clinic.next_monday
    sunday = (datetime.fromisoformat(monday) + timedelta(days=6)).date().isoformat()
    patient = clinic.patient("Kai", "Keyboardchart")
    clinic.book(me, patient, clinic.slots(me, monday, sunday)[0])  # the care relationship
    mrn = clinic.desk.get(f"/api/v1/patients/{patient}")["mrn"]

    key_section(physician, "Chart")
    finder = physician.get_by_role("region", name="Find a patient")
    finder.get_by_label("or record number").focus()
    # the field keeps what an earlier search typed (drafts survive): replace it
    physician.keyboard.press("ControlOrMeta+A")
    physician.keyboard.type(mrn)
    physician.keyboard.press("Enter")
    opener = finder.get_by_role("button", name="Open chart")
    expect(opener).to_have_count(1)
    tab_to(physician, opener, 15)
    physician.keyboard.press("Enter")
    heading = physician.get_by_role("region", name="Chart").get_by_role("heading", level=2)
    expect(heading).to_contain_text("Kai Keyboardchart")
    expect(heading).to_be_focused()

    physician.get_by_role("link", name="Skip to Record an encounter").focus()
    physician.keyboard.press("Enter")
    expect(physician.get_by_role("heading", name="Record an encounter")).to_be_focused()
    encounter = physician.get_by_role("region", name="Record an encounter")
    tab_to(physician, encounter.get_by_label("Chief complaint"), 5)
    physician.keyboard.type("Written from the keyboard")
    tab_to(physician, encounter.get_by_role("button", name="Record encounter"))
    physician.keyboard.press("Enter")
    expect(encounter.get_by_text("Encounter recorded.")).to_be_focused()
    expect(encounter.get_by_label("Chief complaint")).to_have_value("")


SCREENS = {
    "receptionist": ["Patients", "Today", "Calendar", "Working time", "Chat"],
    "physician": ["Calendar", "Chart", "Chat"],
    "administrator": [
        "Tokens",
        "Staff",
        "Catalog",
        "Working time",
        "Keyvault",
        "Audit",
        "Break-glass",
        "Bulk export",
        "Chat",
    ],
}


@pytest.fixture(scope="module")
def admin_page(clinic: Clinic, browser: Browser, contexts: list[BrowserContext]) -> Page:
    page = new_page(contexts, browser)
    register(page, clinic.world.url, clinic.token("administrator"), "admin-two", "Ari Admin")
    return page


def test_axe_finds_no_serious_or_critical_violation_on_any_screen(
    desk: Page, physician: Page, admin_page: Page
) -> None:
    """axe-core (WCAG 2.1 A and AA) on every screen of every role, under the app's CSP."""
    from playwright.sync_api import expect

    found: dict[str, list[dict[str, object]]] = {}
    for role, page in (
        ("receptionist", desk),
        ("physician", physician),
        ("administrator", admin_page),
    ):
        for screen in SCREENS[role]:
            tab(page, screen)
            expect(page.locator("main h2").first).to_be_visible()
            expect(page.get_by_text(re.compile(r"^Loading"))).to_have_count(0)
            views = [screen]
            if role == "physician" and screen == "Calendar":
                page.get_by_role("button", name="Week", exact=True).click()
                views.append("Calendar (week)")
            for view in views:
                violations = axe_violations(page)
                if violations:
                    found[f"{role}: {view}"] = violations
    assert not found, json.dumps(found, indent=1)


def test_no_browser_kept_patient_data_and_the_csp_held(contexts: list[BrowserContext]) -> None:
    for context in contexts:
        for page in context.pages:
            stored = browser_storage(page)
            for name in ("Twiceclick", "Weekpatient", "Duringdrop", "Typedname", "Halfway"):
                assert name not in stored, stored
    assert not CSP_PROBLEMS, CSP_PROBLEMS
