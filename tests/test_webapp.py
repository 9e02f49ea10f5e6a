"""The review app over HTTP (FastAPI's TestClient): the real app, real SQLite, a real output folder paused for review."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from agents.fhir import validate_bundle
from review_app.app import SESSION_COOKIE, create_app
from webapp_support import csrf_of, login, review_output, revision_of


@pytest.fixture(scope="module")
def out(demo_cohort, settings, tmp_path_factory):
    return review_output(demo_cohort, settings, tmp_path_factory.mktemp("webapp"))


@pytest.fixture(scope="module")
def app(out, settings):
    return create_app(out, settings)


@pytest.fixture
def client(app):
    return lambda name: _logged_in(TestClient(app), name)


def _logged_in(c: TestClient, name: str) -> TestClient:
    assert login(c, name).status_code == 303
    return c


def _report_page(c: TestClient, case_id: str):
    page = c.get(f"/cases/{case_id}")
    assert page.status_code == 200
    return page, csrf_of(page.text), revision_of(page.text)


def test_pages_need_a_login(app):
    c = TestClient(app)
    for path in ("/", "/cases/DEMO-004", "/cases/DEMO-004/download/fhir", "/admin/users"):
        r = c.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path


def test_login_needs_its_csrf_token_and_the_right_password(app):
    c = TestClient(app)
    c.get("/login")
    assert c.post("/login", data={"name": "dr.lee", "password": "correct horse battery"}).status_code == 403
    assert c.post("/login", data={"name": "dr.lee", "password": "correct horse battery", "csrf_token": "forged"}).status_code == 403
    r = login(c, "dr.lee", "wrong password")
    assert r.status_code == 303 and "failed=1" in r.headers["location"]
    assert SESSION_COOKIE not in c.cookies


def test_the_session_cookie_is_httponly_and_samesite_strict(app):
    r = login(TestClient(app), "dr.lee")
    cookie = next(v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith(SESSION_COOKIE))
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()


def test_case_list_puts_decisions_first(client, app):
    page = client("vera").get("/").text
    order = [page.index(case_id) for case_id in ("DEMO-004", "DEMO-001")]
    assert order == sorted(order), "the flagged case comes first"


def test_report_page_shows_the_chain_the_pictures_and_the_audit(client, app, out):
    from schemas.report import EvidenceChainReport

    c = client("vera")
    page = c.get("/cases/DEMO-004").text
    report = EvidenceChainReport.model_validate_json((out / "DEMO-004" / "report.json").read_text())
    for f in report.consistency_flags:
        assert f'id="ev-{f.id}"' in page
    for fig in report.figures:
        assert f'src="/cases/DEMO-004/figures/{fig.id}"' in page
        png = c.get(f"/cases/DEMO-004/figures/{fig.id}")
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert c.get("/cases/DEMO-004/figures/FIG999").status_code == 404
    assert c.get("/cases/NOPE").status_code == 404
    assert 'class="audit"' in page


def test_a_viewer_sees_no_review_forms_and_is_refused_over_http(client, app):
    c = client("vera")
    page, csrf, revision = _report_page(c, "DEMO-006")
    assert 'id="approve-form"' not in page.text and 'action="/cases/DEMO-006/edit"' not in page.text
    r = c.post("/cases/DEMO-006/approve", data={"csrf_token": csrf, "revision": revision})
    assert r.status_code == 403
    r = c.post("/cases/DEMO-006/edit", data={"csrf_token": csrf, "revision": revision, "kind": "dismiss_flag",
                                             "flag_id": "F1", "reason": "no"})
    assert r.status_code == 403


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(client, app):
    c = client("dr.lee")
    _, _, revision = _report_page(c, "DEMO-006")
    r = c.post("/cases/DEMO-006/approve", data={"revision": revision})
    assert r.status_code == 403
    r = c.post("/cases/DEMO-006/approve", data={"revision": revision, "csrf_token": "forged"})
    assert r.status_code == 403
    assert _report_page(c, "DEMO-006")[2] == revision


def test_admin_manages_accounts_and_others_cannot(client, app):
    assert client("dr.lee").get("/admin/users").status_code == 403
    c = client("root")
    page = c.get("/admin/users")
    assert page.status_code == 200
    assert c.post("/admin/users", data={"name": "nurse", "role": "viewer", "password": "long enough"}).status_code == 403
    r = c.post("/admin/users", data={"name": "nurse", "role": "viewer", "password": "long enough",
                                     "csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert r.status_code == 303
    assert login(TestClient(app), "nurse", "long enough").status_code == 303


def _edit_grade_confidence(c: TestClient, case_id: str, csrf: str, revision: int, confidence: str, reason: str):
    return c.post(f"/cases/{case_id}/edit", follow_redirects=False, data={
        "csrf_token": csrf, "revision": revision, "kind": "conclusion", "task": "grade",
        "confidence": confidence, "reason": reason,
    })


def test_edit_conflict_approve_and_fhir(client, app, out):
    lee, chen = client("dr.lee"), client("dr.chen")
    _, lee_csrf, revision = _report_page(lee, "DEMO-001")
    _, chen_csrf, chen_revision = _report_page(chen, "DEMO-001")
    assert chen_revision == revision
    draft = lee.get("/cases/DEMO-001/download/json").json()
    grade = next(c for c in draft["conclusions"] if c["task"] == "grade")
    current = next(v for v in ("moderate", "low", "high") if v != grade["confidence"])

    r = _edit_grade_confidence(lee, "DEMO-001", lee_csrf, revision, current, "")
    assert r.status_code == 400  # a change needs a reason
    r = _edit_grade_confidence(lee, "DEMO-001", lee_csrf, revision, current, "rim under-sampled")
    assert r.status_code == 303, r.text
    page, _, new_revision = _report_page(lee, "DEMO-001")
    assert new_revision > revision
    assert "rim under-sampled" in page.text and 'class="override"' in page.text

    stale = _edit_grade_confidence(chen, "DEMO-001", chen_csrf, chen_revision, "high", "second opinion")
    assert stale.status_code == 409
    assert "Edit conflict" in stale.text
    assert _report_page(lee, "DEMO-001")[2] == new_revision  # nothing saved

    r = lee.post("/cases/DEMO-001/approve", data={"csrf_token": lee_csrf, "revision": new_revision}, follow_redirects=False)
    assert r.status_code == 303, r.text
    page, _, approved_revision = _report_page(lee, "DEMO-001")
    assert 'id="approve-form"' not in page.text
    closed = _edit_grade_confidence(lee, "DEMO-001", lee_csrf, approved_revision, "high", "too late")
    assert closed.status_code == 409

    bundle = lee.get("/cases/DEMO-001/download/fhir")
    assert bundle.headers["content-type"].startswith("application/fhir+json")
    data = validate_bundle(bundle.json())
    report = data["entry"][0]["resource"]
    assert report["status"] == "final"
    assert report["resultsInterpreter"] == [{"display": "dr.lee"}]
    saved = json.loads(lee.get("/cases/DEMO-001/download/json").content)
    assert saved["review"]["status"] == "approved"

    # A later change is a new version pointing to the approved one, which stays as it was.
    page, csrf, revision = _report_page(lee, "DEMO-001")
    assert 'id="reopen-form"' in page.text
    r = lee.post("/cases/DEMO-001/reopen", data={"csrf_token": csrf, "revision": revision,
                                                 "reason": "new pathology read"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    reopened = lee.get("/cases/DEMO-001/download/json").json()["review"]
    assert reopened["version"] == 2 and reopened["supersedes_sha256"]
    assert reopened["status"] == "awaiting_review"
    _, csrf, revision = _report_page(lee, "DEMO-001")
    assert lee.post("/cases/DEMO-001/approve", data={"csrf_token": csrf, "revision": revision},
                    follow_redirects=False).status_code == 303
    amended = validate_bundle(lee.get("/cases/DEMO-001/download/fhir").json())
    assert amended["entry"][0]["resource"]["status"] == "amended"


@pytest.mark.parametrize("kind", ["json", "md_en", "md_zh", "html", "fhir"])
def test_downloads(client, app, kind):
    r = client("vera").get(f"/cases/DEMO-004/download/{kind}")
    assert r.status_code == 200 and r.content
    assert "attachment" in r.headers["content-disposition"]


def test_language_switch_and_no_open_redirect(client, app):
    c = client("vera")
    r = c.get("/lang/zh?next=/cases/DEMO-004", follow_redirects=False)
    assert r.headers["location"] == "/cases/DEMO-004"
    page = c.get("/cases/DEMO-004").text
    assert '<html lang="zh-Hans">' in page and "证据链" in page and "审计记录" in page
    assert c.get("/lang/en?next=//evil.example/x", follow_redirects=False).headers["location"] == "/"


def test_logout_ends_the_session_on_the_server(client, app):
    c = client("vera")
    cookie = c.cookies[SESSION_COOKIE]
    page = c.get("/")
    assert c.post("/logout", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False).status_code == 303
    replay = TestClient(app)
    replay.cookies.set(SESSION_COOKIE, cookie)
    assert replay.get("/", follow_redirects=False).status_code == 303


def test_dismiss_rerank_and_rewrite_are_recorded_with_their_reasons(client, app):
    c = client("dr.chen")
    report = c.get("/cases/DEMO-003/download/json").json()
    flag = report["consistency_flags"][0]["id"]
    last = report["sampling_plan"][-1]["unit_id"]
    section = next(s for s in report["narrative"] if s["key"] == "spatial")
    posts = [
        {"kind": "dismiss_flag", "flag_id": flag, "reason": "known artefact of this scanner"},
        {"kind": "sampling_target", "unit_id": last, "rank": "1", "reason": "safer trajectory"},
        {"kind": "narrative", "section": section["key"], "index": "0", "text": "Reviewed at the tumour board.",
         "text_zh": "已在肿瘤委员会讨论。", "reason": "board summary"},
    ]
    for form in posts:
        _, csrf, revision = _report_page(c, "DEMO-003")
        r = c.post("/cases/DEMO-003/edit", data={**form, "csrf_token": csrf, "revision": revision}, follow_redirects=False)
        assert r.status_code == 303, r.text
    after = c.get("/cases/DEMO-003/download/json").json()
    assert next(f for f in after["consistency_flags"] if f["id"] == flag)["dismissal"]["reviewer"] == "dr.chen"
    assert after["sampling_plan"][0]["unit_id"] == last
    assert any(s["source"] == "clinician" and s["text"]["zh"] == "已在肿瘤委员会讨论。"
               for sec in after["narrative"] for s in sec["sentences"])
    audit = c.get("/cases/DEMO-003").text
    for form in posts:
        assert form["reason"] in audit

    _, csrf, revision = _report_page(c, "DEMO-003")
    bad = c.post("/cases/DEMO-003/edit", data={"kind": "dismiss_flag", "flag_id": "F99", "reason": "x",
                                              "csrf_token": csrf, "revision": revision})
    assert bad.status_code == 400 and "F99" in bad.text
    assert _report_page(c, "DEMO-003")[2] == revision
