"""What the web-app tests share: a real output folder paused for review, accounts, and a logged-in client."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from review_app.accounts import AccountStore

# DEMO-004 is flagged (a biopsy from the oedema reads low grade against a high-grade tumour); DEMO-001 and
# DEMO-003 have sampling plans.
REVIEW_CASES = ("DEMO-001", "DEMO-003", "DEMO-004", "DEMO-006")
PASSWORD = "correct horse battery"
ACCOUNTS = {"dr.lee": "clinician", "dr.chen": "clinician", "vera": "viewer", "root": "admin"}
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_REVISION = re.compile(r'data-revision="([0-9]+)"')


def review_output(demo_cohort: Path, settings, root: Path) -> Path:
    """Run the real workflow with review on over a few demo cases; add one account per role."""
    from agents.runner import run_batch

    cohort = root / "cohort"
    for case_id in REVIEW_CASES:
        shutil.copytree(demo_cohort / "cases" / case_id, cohort / "cases" / case_id)
    out = root / "out"
    results = run_batch(cohort, out, settings.model_copy(update={"interactive_review": True}), progress=False)
    assert all(r.status in ("ok", "awaiting_review") for r in results), [(r.case_id, r.error) for r in results]
    accounts = AccountStore(out)
    for name, role in ACCOUNTS.items():
        accounts.add_user(name, role, PASSWORD)
    return out


def csrf_of(html: str) -> str:
    return _CSRF.search(html).group(1)


def revision_of(html: str) -> int:
    return int(_REVISION.search(html).group(1))


def login(client, name: str, password: str = PASSWORD):
    form = client.get("/login")
    return client.post("/login", data={"name": name, "password": password, "csrf_token": csrf_of(form.text),
                                       "next": "/"}, follow_redirects=False)
