"""The whole mesh as real processes with the gateway serving the built web app, and
helpers to drive that app in Debian's Chromium through Playwright (never a downloaded
browser: `executable_path` is the system's `/usr/bin/chromium`).

Where Chromium or the build is missing the browser tests skip with the reason, except in
CI (`CI` set), where they fail: they must never pass by not running.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest.mock import patch

import pytest

from tests.gateway.support import EVERY_SERVICE, Mesh, mesh
from tests.processes import ROOT, Process

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

CHROMIUM = Path(os.environ.get("MEDIHAVEN_TEST_CHROMIUM", "/usr/bin/chromium"))
WEB_DIR = ROOT / "frontend" / "dist"
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # A container's /dev/shm is often 64 MB, too small for Chromium's shared memory: a
    # renderer that runs out crashes the page. /tmp instead, wherever the tests run.
    "--disable-dev-shm-usage",
]
PASSPHRASE = "correct horse battery staple"
VIEWPORT = {"width": 1280, "height": 800}
READY_S = 120.0


def require_browser() -> None:
    """Skip (or, in CI, fail) unless Chromium, Playwright and the build are all here."""
    problems = []
    if not CHROMIUM.exists():
        problems.append(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("the playwright package is not installed (pip install -e '.[dev]')")
    if not (WEB_DIR / "index.html").exists():
        problems.append(f"the web app is not built in {WEB_DIR} (make web)")
    if problems:
        reason = "browser tests cannot run: " + "; ".join(problems)
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@contextmanager
def web_mesh(tag: str, log_dir: Path, **gateway_env: str) -> Iterator[Mesh]:
    """Every service and a gateway serving frontend/dist, in a namespace of their own.
    Each may take up to READY_S to be ready: browser tests share two cores with others."""
    ready = Process.wait_ready
    with (
        patch.object(Process, "wait_ready", lambda self, timeout=READY_S: ready(self, timeout)),
        mesh(
            tag,
            log_dir,
            EVERY_SERVICE,
            MEDIHAVEN_WEB_DIR=str(WEB_DIR),
            # the administrator's page stays open through every flow; the auto-lock test
            # shortens its own page's lock with ?lock=
            MEDIHAVEN_WEB_AUTO_LOCK_S="3600",
            **gateway_env,
        ) as world,
    ):
        yield world


def new_page(contexts: list[BrowserContext], browser: Any, **options: Any) -> Page:
    """A page in a fresh browser context (its own storage), kept for the final checks."""
    context: BrowserContext = browser.new_context(viewport=VIEWPORT, **options)
    context.set_default_timeout(20_000)
    contexts.append(context)
    page = context.new_page()
    page.on("console", _watch_console)
    return page


CSP_PROBLEMS: list[str] = []
"""Console errors about the Content-Security-Policy, over every page (the app must run
under the gateway's strict policy without a single violation)."""


def _watch_console(message: Any) -> None:
    if message.type == "error" and "Content Security Policy" in message.text:
        CSP_PROBLEMS.append(message.text)


def register(
    page: Page,
    url: str,
    token: str,
    username: str,
    display_name: str,
    *,
    specialty: str | None = None,
    path: str = "/",
) -> None:
    """Register in the browser (the key pair is made there) and wait for the workspace."""
    from playwright.sync_api import expect

    page.goto(url + path)
    page.get_by_label("Registration token").fill(token)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Display name").fill(display_name)
    if specialty:
        page.get_by_label("Specialty (physicians, optional)").fill(specialty)
    page.get_by_label("Passphrase", exact=True).fill(PASSPHRASE)
    page.get_by_label("Repeat passphrase").fill(PASSPHRASE)
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_role("button", name="Lock")).to_be_visible()
    expect(page.get_by_text(f"{display_name} ·")).to_be_visible()


def tab(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Sections").get_by_role("button", name=name).click()


def screenshot(page: Page, name: str, *, top: bool = True) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    if top:
        page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def browser_storage(page: Page) -> str:
    """Everything this origin keeps in the browser: localStorage, sessionStorage, every
    IndexedDB database and record, cookies, Cache Storage names, as one JSON text."""
    dump = page.evaluate(
        """async () => {
          const idb = {};
          for (const info of await indexedDB.databases()) {
            const db = await new Promise((ok, ko) => {
              const r = indexedDB.open(info.name); r.onsuccess = () => ok(r.result);
              r.onerror = () => ko(r.error);
            });
            const stores = {};
            for (const name of db.objectStoreNames) {
              stores[name] = await new Promise((ok, ko) => {
                const r = db.transaction(name).objectStore(name).getAll();
                r.onsuccess = () => ok(r.result); r.onerror = () => ko(r.error);
              });
            }
            db.close();
            idb[info.name] = stores;
          }
          return {
            local: { ...localStorage }, session: { ...sessionStorage }, idb,
            cookies: document.cookie, caches: await caches.keys(),
          };
        }"""
    )
    return json.dumps(dump, ensure_ascii=False)


AXE_SCRIPT = ROOT / "frontend" / "node_modules" / "axe-core" / "axe.min.js"
AXE_PATH = "/__tests__/axe.min.js"
"""Where the tests serve axe-core: a path of the app's own origin, answered by the test
(a Playwright route), so the page loads it as any same-origin script under the app's real
Content-Security-Policy; nothing is relaxed or bypassed to run it."""
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
_AXE_ROUTED: set[int] = set()


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """The serious and critical WCAG 2.1 A/AA violations axe-core finds on the page now
    (rule id, impact, help and the first few elements)."""
    if not AXE_SCRIPT.exists():
        pytest.fail(f"axe-core is missing at {AXE_SCRIPT} (cd frontend && npm ci)")
    if id(page) not in _AXE_ROUTED:
        page.route(
            "**" + AXE_PATH,
            lambda route: route.fulfill(path=str(AXE_SCRIPT), content_type="text/javascript"),
        )
        _AXE_ROUTED.add(id(page))
    if not page.evaluate("() => 'axe' in window"):
        page.add_script_tag(url=AXE_PATH)
    found: list[dict[str, Any]] = page.evaluate(
        """async (tags) => {
          const result = await window.axe.run(document, { runOnly: { type: "tag", values: tags } });
          return result.violations
            .filter((v) => v.impact === "serious" || v.impact === "critical")
            .map((v) => ({
              id: v.id, impact: v.impact, help: v.help,
              nodes: v.nodes.slice(0, 4).map((n) => n.target.join(" ") + " :: " + n.failureSummary),
            }));
        }""",
        AXE_TAGS,
    )
    return found
