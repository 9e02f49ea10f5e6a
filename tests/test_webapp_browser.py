"""End to end in headless Chromium (Playwright driving Debian's browser, no browser download).

`evchain serve` runs for real in a subprocess on a free loopback port over an output folder the
real workflow made with review on. Screenshots of the report page in English and Chinese are
written to tests/artifacts/ (gitignored); the path is printed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from agents.fhir import validate_bundle
from schemas.report import EvidenceChainReport
from webapp_support import PASSWORD, review_output

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts"
BROWSERS = ("/usr/bin/chromium", "/usr/bin/chromium-headless-shell")
BROWSER_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
    # No outside lookups: every name fails except the app's loopback address.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")


def _browser_path() -> str:
    found = next((p for p in BROWSERS if os.access(p, os.X_OK)), None)
    if found is None:
        pytest.skip("no Debian chromium: run .ci/setup.d/20-chromium.sh")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(url: str, server: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"evchain serve exited with {server.returncode}: {server.stderr.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


@pytest.fixture(scope="module")
def out(demo_cohort, settings, tmp_path_factory):
    return review_output(demo_cohort, settings, tmp_path_factory.mktemp("browser"))


@pytest.fixture(scope="module")
def base_url(out):
    for _ in range(3):  # another process may take the port between choosing and binding it
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "agents.cli", "serve", "--out", str(out), "--port", str(port)],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        try:
            _wait_until_up(f"http://127.0.0.1:{port}/login", server)
        except RuntimeError:
            continue
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.terminate()
            server.wait(timeout=30)
        return
    pytest.fail("evchain serve did not start on a free port")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=_browser_path(), headless=True, args=BROWSER_ARGS)
        yield b
        b.close()


@pytest.fixture
def as_user(browser, base_url):
    contexts = []

    def open_as(name: str):
        context = browser.new_context(base_url=base_url, accept_downloads=True, viewport={"width": 1400, "height": 1000})
        contexts.append(context)
        page = context.new_page()
        page.goto("/login")
        page.fill("input[name=name]", name)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base_url}/")
        return page

    yield open_as
    for context in contexts:
        context.close()


def _report(out: Path, case_id: str) -> EvidenceChainReport:
    return EvidenceChainReport.model_validate_json((out / case_id / "report.json").read_text())


def test_clinician_reviews_a_flagged_case_end_to_end(as_user, out, base_url):
    page = as_user("dr.lee")
    first_case = page.locator("table.cases tbody tr").first
    assert "DEMO-004" in first_case.inner_text()  # the flagged case, decisions first
    first_case.get_by_role("link").click()
    page.wait_for_url("**/cases/DEMO-004")

    report = _report(out, "DEMO-004")
    kinds = {f.kind for f in report.figures}
    for fig in report.figures:
        img = page.locator(f"#fig-{fig.id} img")
        assert img.get_attribute("alt") == fig.alt.en
        page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=img.element_handle(), timeout=10_000)
    if report.figures:
        assert {"mri_slices", "slide_heatmap"} <= kinds
    else:
        print("\nDEMO-004 has no figures yet (figures branch not merged): image checks skipped")
    for flag in report.consistency_flags:
        assert page.locator(f"#ev-{flag.id}").is_visible()

    grade = next(c for c in report.conclusions if c.task == "grade")
    new_confidence = next(v for v in ("moderate", "low", "high") if v != grade.confidence)
    row = page.locator("#conclusion-grade")
    row.locator("summary").click()
    row.locator("select[name=confidence]").select_option(new_confidence)
    row.locator("input[name=reason]").fill("enhancing rim not sampled")
    row.locator("button[type=submit]").click()
    page.wait_for_load_state()
    assert "enhancing rim not sampled" in page.locator("#conclusion-grade .override").inner_text()
    assert "enhancing rim not sampled" in page.locator("table.audit").inner_text()

    page.locator("#approve-form button").click()
    page.wait_for_load_state()
    assert page.locator("#approve-form").count() == 0
    assert _report(out, "DEMO-004").review.status == "approved"

    with page.expect_download() as download:
        page.click("#download-fhir")
    bundle = validate_bundle(json.loads(Path(download.value.path()).read_text()))
    diagnostic = bundle["entry"][0]["resource"]
    assert diagnostic["status"] == "final" and diagnostic["resultsInterpreter"] == [{"display": "dr.lee"}]


def test_viewer_cannot_approve(as_user, base_url):
    page = as_user("vera")
    page.goto("/cases/DEMO-006")
    assert page.locator("#approve-form").count() == 0
    assert page.locator("form[action$='/edit']").count() == 0
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")  # the logout form's
    refused = page.request.post("/cases/DEMO-006/approve", form={"csrf_token": csrf, "revision": "1"})
    assert refused.status == 403


def test_a_stale_edit_gets_a_conflict_page(as_user):
    lee, chen = as_user("dr.lee"), as_user("dr.chen")
    for page in (lee, chen):
        page.goto("/cases/DEMO-006")
    flag = lee.locator("ul.flags li form.dismiss-flag").first
    flag_id = flag.locator("input[name=flag_id]").get_attribute("value")
    for page, reason in ((lee, "not relevant here"), (chen, "seen at the board")):
        item = page.locator(f"#ev-{flag_id}")
        item.locator("summary").click()
        item.locator("input[name=reason]").fill(reason)
    lee.locator(f"#ev-{flag_id} button[type=submit]").click()
    lee.wait_for_load_state()
    with chen.expect_response(lambda r: r.url.endswith("/cases/DEMO-006/edit")) as answer:
        chen.locator(f"#ev-{flag_id} button[type=submit]").click()
    assert answer.value.status == 409
    assert chen.locator("h1").inner_text() == "Edit conflict"


def test_a_form_post_without_the_csrf_token_is_refused(as_user):
    page = as_user("dr.lee")
    page.goto("/cases/DEMO-006")
    revision = page.locator("input[name=revision]").first.get_attribute("value")
    refused = page.request.post("/cases/DEMO-006/approve", form={"revision": revision})
    assert refused.status == 403


def test_screenshots_in_english_and_chinese(as_user, base_url):
    page = as_user("vera")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shots = []
    for lang in ("en", "zh"):
        page.goto(f"/lang/{lang}?next=/cases/DEMO-004")
        page.wait_for_url("**/cases/DEMO-004")
        assert page.locator("html").get_attribute("lang") == ("zh-Hans" if lang == "zh" else "en")
        path = ARTIFACTS / f"report_DEMO-004.{lang}.png"
        page.screenshot(path=str(path), full_page=True)
        shots.append(path)
        page.goto("/")
        list_path = ARTIFACTS / f"cases.{lang}.png"
        page.screenshot(path=str(list_path))
        shots.append(list_path)
    assert "病例列表" in page.locator("h1").inner_text()  # the last page shot was the Chinese case list
    for path in shots:
        assert path.stat().st_size > 10_000
    print("\nscreenshots: " + ", ".join(str(p) for p in shots))
