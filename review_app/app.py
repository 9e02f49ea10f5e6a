"""The review web app: server-rendered pages over one output folder (FastAPI + Jinja2, no JavaScript build).

Security: argon2-hashed accounts and server-side sessions (review_app/accounts.py); the session
cookie is signed, HttpOnly and SameSite=Strict; every POST carries the session's CSRF token (the
login form a signed pre-session token) and is refused with 403 without it; roles are checked on
the server for every action, not only hidden in the page. Optimistic versioning: every edit form
carries the report's revision and a stale one gets a 409 page, nothing saved.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from itsdangerous import BadSignature, URLSafeTimedSerializer
from pydantic import TypeAdapter, ValidationError

from agents.context import Settings
from agents.consistency.grounding import fmt_probability
from agents.fhir import bundle_json
from agents.render import layout
from agents.review.service import InvalidEdit, ReviewClosed, ReviewService, UnknownCase, VersionConflict
from prompts import LANGUAGES
from review_app.accounts import ROLES, SESSION_LIFETIME, AccountError, AccountStore, Session
from review_app.i18n import term_of, translator
from schemas.report import EvidenceChainReport, Sentence
from schemas.review import Edit

SESSION_COOKIE = "evchain_session"
LOGIN_COOKIE = "evchain_login"
LANG_COOKIE = "evchain_lang"
_HERE = Path(__file__).resolve().parent
# Downloadable files of a case folder, by the name the page links to.
DOWNLOADS: dict[str, tuple[str, str]] = {
    "json": ("report.json", "application/json"),
    "md_en": ("report.en.md", "text/markdown; charset=utf-8"),
    "md_zh": ("report.zh.md", "text/markdown; charset=utf-8"),
    "html": ("report.html", "text/html; charset=utf-8"),
}
# Only a run paused for review takes edits; a draft made without review is read-only here.
_REVIEWABLE = "awaiting_review"


class PageError(Exception):
    """An error shown as a page: status code, title key and body text."""

    def __init__(self, status: int, title: str, body: str, reload: str | None = None) -> None:
        super().__init__(body)
        self.status, self.title, self.body, self.reload = status, title, body, reload


def _figure_evidence(report: EvidenceChainReport) -> dict[str, str]:
    """Evidence id -> the first figure showing it, so a click on an id jumps to its picture."""
    shown: dict[str, str] = {}
    for fig in report.figures:
        for e in fig.evidence:
            shown.setdefault(e, fig.id)
    return shown


def _flag_sentences(report: EvidenceChainReport) -> dict[str, Sentence]:
    """Flag id -> its sentence in the decisions section: the flag in every language, action included."""
    sections, _ = layout(report)
    return {i.anchor: i.sentence for s in sections if s.key == "decisions" for i in s.items if i.anchor}


def _local_path(target: str | None) -> str:
    # Only paths on this site: no scheme, no '//' (another host), no backslash tricks.
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def create_app(out_dir: Path, settings: Settings | None = None) -> FastAPI:
    out_dir = Path(out_dir)
    accounts = AccountStore(out_dir)
    service = ReviewService(out_dir, settings or Settings())
    signer = URLSafeTimedSerializer(accounts.secret_key(), salt="evchain-session")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"), autoescape=True, undefined=jinja2.StrictUndefined,
    )
    app = FastAPI(title="EvidenceChain review", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=_HERE / "static"), name="static")

    def lang_of(request: Request) -> str:
        lang = request.cookies.get(LANG_COOKIE, "en")
        return lang if lang in LANGUAGES else "en"

    def page(request: Request, template: str, session: Session | None, status: int = 200, **context: Any) -> HTMLResponse:
        lang = lang_of(request)
        html = env.get_template(template).render(
            lang=lang, t=translator(lang), term=term_of(lang), session=session, path=request.url.path,
            quote=quote, **context,
        )
        return HTMLResponse(html, status_code=status)

    def session_of(request: Request) -> Session | None:
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            return None
        try:
            token = signer.loads(cookie, max_age=int(SESSION_LIFETIME.total_seconds()))
        except BadSignature:
            return None
        return accounts.session(token)

    def require(permission: str) -> Callable[[Request], Session]:
        def dependency(request: Request) -> Session:
            session = session_of(request)
            if session is None:
                raise HTTPException(303, headers={"Location": f"/login?next={quote(request.url.path)}"})
            if not session.user.can(permission):
                t = translator(lang_of(request))
                raise PageError(403, "forbidden.title", t("forbidden.body", role=t(f"role.{session.user.role}")))
            return session
        return dependency

    async def form_of(request: Request, session: Session) -> dict[str, str]:
        """The posted form, once its CSRF token matched the session's."""
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        if not secrets.compare_digest(form.get("csrf_token", ""), session.csrf):
            raise PageError(403, "forbidden.title", translator(lang_of(request))("forbidden.csrf"))
        return form

    def report_of(case_id: str) -> EvidenceChainReport:
        try:
            return service.get(case_id)
        except UnknownCase:
            raise PageError(404, "notfound.title", case_id) from None

    def report_view(request: Request, session: Session, case_id: str, error: str | None = None) -> HTMLResponse:
        report = report_of(case_id)
        # One read of the checkpointed report; the service's revision is the number of audit entries.
        trail = report.review.audit_trail
        return page(
            request, "report.html.j2", session, status=400 if error else 200, report=report,
            revision=len(trail), audit=trail, shown=_figure_evidence(report),
            flag_sentences=_flag_sentences(report), prob=fmt_probability, can_review=session.user.can("review"),
            is_open=report.review.status == _REVIEWABLE, error=error,
        )

    @app.exception_handler(PageError)
    async def page_error(request: Request, exc: PageError) -> HTMLResponse:
        return page(request, "error.html.j2", session_of(request), status=exc.status, title=exc.title, body=exc.body,
                    reload=exc.reload)

    # --- login -------------------------------------------------------------------------------
    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/", failed: bool = False) -> HTMLResponse:
        token = secrets.token_urlsafe(32)
        response = page(request, "login.html.j2", None, next=_local_path(next), failed=failed, csrf=token)
        response.set_cookie(LOGIN_COOKIE, signer.dumps(token), httponly=True, samesite="strict", max_age=3600)
        return response

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        try:
            expected = signer.loads(request.cookies.get(LOGIN_COOKIE, ""), max_age=3600)
        except BadSignature:
            expected = None
        if expected is None or not secrets.compare_digest(form.get("csrf_token", ""), expected):
            raise PageError(403, "forbidden.title", translator(lang_of(request))("forbidden.csrf"))
        user = accounts.authenticate(form.get("name", ""), form.get("password", ""))
        target = _local_path(form.get("next"))
        if user is None:
            return RedirectResponse(f"/login?failed=1&next={quote(target)}", status_code=303)
        token, _ = accounts.start_session(user)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(SESSION_COOKIE, signer.dumps(token), httponly=True, samesite="strict",
                            max_age=int(SESSION_LIFETIME.total_seconds()))
        response.delete_cookie(LOGIN_COOKIE)
        return response

    @app.post("/logout")
    async def logout(request: Request, session: Session = Depends(require("read"))) -> Response:
        await form_of(request, session)
        accounts.end_session(signer.loads(request.cookies[SESSION_COOKIE]))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    @app.get("/lang/{lang}")
    def switch_language(lang: str, next: str = "/") -> Response:
        # A display preference only: it changes nothing on the server, so a GET link is fine.
        response = RedirectResponse(_local_path(next), status_code=303)
        if lang in LANGUAGES:
            response.set_cookie(LANG_COOKIE, lang, samesite="strict", max_age=365 * 86400)
        return response

    # --- cases -------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse)
    def cases(request: Request, session: Session = Depends(require("read"))) -> HTMLResponse:
        return page(request, "cases.html.j2", session, rows=service.cases())  # decisions needed first

    @app.get("/cases/{case_id}", response_class=HTMLResponse)
    def report_page(case_id: str, request: Request, session: Session = Depends(require("read"))) -> HTMLResponse:
        return report_view(request, session, case_id)

    @app.get("/cases/{case_id}/figures/{figure_id}")
    def figure(case_id: str, figure_id: str, request: Request, session: Session = Depends(require("read"))) -> Response:
        report = report_of(case_id)
        fig = next((f for f in report.figures if f.id == figure_id), None)
        case_dir = (out_dir / case_id).resolve()
        path = (case_dir / fig.path).resolve() if fig else None
        if path is None or not path.is_relative_to(case_dir) or path.suffix != ".png" or not path.is_file():
            raise PageError(404, "notfound.title", f"{case_id}/{figure_id}")
        return FileResponse(path, media_type="image/png")

    @app.get("/cases/{case_id}/download/{kind}")
    def download(case_id: str, kind: str, request: Request, session: Session = Depends(require("read"))) -> Response:
        report = report_of(case_id)
        if kind == "fhir":
            return Response(bundle_json(report), media_type="application/fhir+json",
                            headers={"Content-Disposition": f'attachment; filename="{case_id}.fhir.json"'})
        if kind not in DOWNLOADS:
            raise PageError(404, "notfound.title", kind)
        name, media = DOWNLOADS[kind]
        path = out_dir / case_id / name
        if not path.is_file():
            raise PageError(404, "notfound.title", f"{case_id}/{name}")
        return FileResponse(path, media_type=media, filename=f"{case_id}.{name}")

    # --- accounts ----------------------------------------------------------------------------
    @app.get("/admin/users", response_class=HTMLResponse)
    def users(request: Request, session: Session = Depends(require("accounts")), added: str | None = None) -> HTMLResponse:
        return page(request, "users.html.j2", session, users=accounts.users(), roles=ROLES, added=added, error=None)

    @app.post("/admin/users")
    async def add_user(request: Request, session: Session = Depends(require("accounts"))) -> Response:
        form = await form_of(request, session)
        try:
            user = accounts.add_user(form.get("name", ""), form.get("role", ""), form.get("password", ""))
        except AccountError as err:
            return page(request, "users.html.j2", session, status=400, users=accounts.users(), roles=ROLES,
                        added=None, error=str(err))
        return RedirectResponse(f"/admin/users?added={quote(user.name)}", status_code=303)

    # --- review ------------------------------------------------------------------------------
    def expected_revision(form: dict[str, str]) -> int:
        try:
            return int(form.get("revision", ""))
        except ValueError:
            raise PageError(400, "invalid.title", "revision: missing or not a number") from None

    def reason_of(form: dict[str, str], needed_for: str) -> str:
        reason = form.get("reason", "").strip()
        if not reason:
            raise PageError(400, "invalid.title", f"reason: {needed_for} needs a reason")
        return reason

    def guarded(case_id: str, request: Request, action: Callable[[], object], revision: int) -> Response:
        """Run a review action; a stale revision or a closed report is a page saying so, nothing saved."""
        t = translator(lang_of(request))
        try:
            action()
        except UnknownCase:
            raise PageError(404, "notfound.title", case_id) from None
        except VersionConflict:
            raise PageError(409, "conflict.title", t("conflict.body", given=revision, current=service.revision(case_id)),
                            reload=f"/cases/{case_id}") from None
        except ReviewClosed:
            raise PageError(409, "closed.title", t("closed.body"), reload=f"/cases/{case_id}") from None
        except (InvalidEdit, ValidationError) as err:
            return report_view(request, session_of(request), case_id, error=_one_line(err))
        return RedirectResponse(f"/cases/{case_id}", status_code=303)

    @app.post("/cases/{case_id}/edit")
    async def edit(case_id: str, request: Request, session: Session = Depends(require("review"))) -> Response:
        form = await form_of(request, session)
        revision = expected_revision(form)
        report = report_of(case_id)
        return guarded(
            case_id, request,
            lambda: service.edit(case_id, edits_from_form(form, report), actor=session.user.name,
                                 expected_revision=revision),
            revision,
        )

    @app.post("/cases/{case_id}/approve")
    async def approve(case_id: str, request: Request, session: Session = Depends(require("review"))) -> Response:
        form = await form_of(request, session)
        revision = expected_revision(form)
        return guarded(
            case_id, request,
            lambda: service.approve(case_id, actor=session.user.name, expected_revision=revision,
                                    comment=form.get("comment") or None),
            revision,
        )

    @app.post("/cases/{case_id}/reject")
    async def reject(case_id: str, request: Request, session: Session = Depends(require("review"))) -> Response:
        form = await form_of(request, session)
        revision = expected_revision(form)
        reason = reason_of(form, "a rejection")
        return guarded(
            case_id, request,
            lambda: service.reject(case_id, actor=session.user.name, expected_revision=revision, reason=reason),
            revision,
        )

    @app.post("/cases/{case_id}/reopen")
    async def reopen(case_id: str, request: Request, session: Session = Depends(require("review"))) -> Response:
        form = await form_of(request, session)
        revision = expected_revision(form)
        reason = reason_of(form, "a new version")
        return guarded(
            case_id, request,
            lambda: service.reopen(case_id, actor=session.user.name, expected_revision=revision, reason=reason),
            revision,
        )

    return app


_EDITS = TypeAdapter(list[Edit])


def _one_line(err: Exception) -> str:
    if isinstance(err, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'form'}: {e['msg']}" for e in err.errors())
    return " ".join(str(err).split())


def edits_from_form(form: dict[str, str], report: EvidenceChainReport) -> list:
    """The typed edits (schemas/review.py) one edit form asks for; the service checks them against the report."""
    kind, reason = form.get("kind"), form.get("reason", "").strip()
    if kind == "conclusion":
        current = next((c for c in report.conclusions if c.task == form.get("task")), None)
        items = [
            {"kind": "conclusion", "task": form.get("task", ""), "field": field, "value": form[field], "reason": reason}
            for field in ("label", "confidence")
            if form.get(field) and (current is None or form[field] != getattr(current, field))
        ]
        if not items:
            raise InvalidEdit("conclusion: neither the label nor the confidence was changed")
    elif kind == "dismiss_flag":
        items = [{"kind": kind, "flag_id": form.get("flag_id", ""), "reason": reason}]
    elif kind == "sampling_target":
        items = [{"kind": kind, "unit_id": form.get("unit_id", ""), "rank": form.get("rank", ""), "reason": reason}]
    elif kind == "narrative":
        section = next((s for s in report.narrative if s.key == form.get("section")), None)
        index = form.get("index", "")
        cited = (section.sentences[int(index)].evidence
                 if section and index.isdigit() and int(index) < len(section.sentences) else [])
        items = [{"kind": kind, "section": form.get("section", ""), "index": index, "text": form.get("text", ""),
                  "text_zh": form.get("text_zh") or None, "evidence": cited, "reason": reason}]
    else:
        raise InvalidEdit(f"kind: unknown edit {kind!r}")
    return _EDITS.validate_python(items)
