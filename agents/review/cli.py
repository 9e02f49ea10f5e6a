"""`evchain review list|show|edit|approve|reject|reopen|audit CASE_ID --out DIR`: the review service from a terminal.

A change acts on the revision the command reads just before it unless `--expected-revision`
pins the one the caller saw (scripts that must not overwrite a colleague's change).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ACTIONS = ("list", "show", "edit", "approve", "reject", "reopen", "audit")
REFUSED = 3  # exit code of a change the review refused (stale revision, closed version)


def add_review_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=ACTIONS)
    p.add_argument("case_id", nargs="?", help="case id (all but list)")
    p.add_argument("--out", required=True, help="output folder of the run")
    p.add_argument("--review-db", default=None, help="postgresql:// URL when the run used one")
    p.add_argument("--actor", default=None, help="reviewer name recorded in the audit trail (changes)")
    p.add_argument("--expected-revision", type=int, default=None, help="refuse if the case changed since this revision")
    p.add_argument("--reason", default=None, help="why (edits, reject, reopen)")
    p.add_argument("--comment", default=None, help="comment recorded with an approval")
    p.add_argument("--json", dest="edit_json", default=None, help="one edit or a list of edits as JSON (schemas/review.py)")
    p.add_argument("--conclusion", default=None, help="edit: task of the conclusion to change, with --label or --confidence")
    p.add_argument("--label", default=None)
    p.add_argument("--confidence", default=None, choices=("high", "moderate", "low"))
    p.add_argument("--dismiss-flag", default=None, metavar="FLAG_ID", help="edit: dismiss this flag")
    p.add_argument("--target", default=None, metavar="UNIT_ID", help="edit: move this sampling unit to --rank")
    p.add_argument("--rank", type=int, default=None)
    p.add_argument("--sentence", default=None, metavar="SECTION:INDEX", help="edit: replace this narrative sentence")
    p.add_argument("--text", default=None, help="the reviewer's sentence (--sentence)")
    p.add_argument("--evidence", default="", help="comma-separated evidence ids the sentence cites")


def _edits(args: argparse.Namespace) -> list:
    from pydantic import TypeAdapter

    from schemas.review import Edit

    raw: list[dict] = []
    if args.edit_json:
        loaded = json.loads(args.edit_json)
        raw += loaded if isinstance(loaded, list) else [loaded]
    if args.conclusion:
        field, value = ("label", args.label) if args.label else ("confidence", args.confidence)
        raw.append({"kind": "conclusion", "task": args.conclusion, "field": field, "value": value, "reason": args.reason})
    if args.dismiss_flag:
        raw.append({"kind": "dismiss_flag", "flag_id": args.dismiss_flag, "reason": args.reason})
    if args.target:
        raw.append({"kind": "sampling_target", "unit_id": args.target, "rank": args.rank, "reason": args.reason})
    if args.sentence:
        section, _, index = args.sentence.partition(":")
        raw.append({"kind": "narrative", "section": section, "index": int(index or 0), "text": args.text,
                    "evidence": [e for e in args.evidence.split(",") if e], "reason": args.reason})
    return [TypeAdapter(Edit).validate_python(r) for r in raw]


def run_review_command(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from agents.context import Settings
    from agents.review.service import InvalidEdit, ReviewClosed, ReviewService, UnknownCase, VersionConflict

    service = ReviewService(Path(args.out), Settings(review_db=args.review_db))
    try:
        if args.action == "list":
            rows = service.cases()
            print(f"{'case':<16} {'status':<16} {'version':>7} {'revision':>8} {'flags':>5} {'worst':<8} decisions")
            for r in rows:
                print(f"{r.case_id:<16} {r.status:<16} {r.version:>7} {r.revision:>8} {r.flags:>5} "
                      f"{r.most_severe or '-':<8} {r.decisions_needed}")
            return 0
        if not args.case_id:
            print(f"evchain: error: review {args.action}: CASE_ID is required", file=sys.stderr)
            return 2
        case = args.case_id
        if args.action == "show":
            report = service.get(case)
            print(f"{case}: {report.review.status}, version {report.review.version}, "
                  f"revision {len(report.review.audit_trail)}")
            print((Path(args.out) / case / "report.en.md").read_text(encoding="utf-8"))
            return 0
        if args.action == "audit":
            for e in service.audit(case):
                print(json.dumps(e.model_dump(mode="json"), ensure_ascii=False))
            return 0
        if not args.actor:
            print(f"evchain: error: review {args.action}: --actor is required", file=sys.stderr)
            return 2
        revision = service.revision(case) if args.expected_revision is None else args.expected_revision
        common = {"actor": args.actor, "expected_revision": revision}
        if args.action == "edit":
            report = service.edit(case, _edits(args), **common)
        elif args.action == "approve":
            report = service.approve(case, comment=args.comment, **common)
        elif args.action == "reject":
            report = service.reject(case, reason=args.reason or "", **common)
        else:
            report = service.reopen(case, reason=args.reason or "", **common)
        print(f"{case}: {report.review.status}, version {report.review.version}, "
              f"revision {len(report.review.audit_trail)}")
        return 0
    except (VersionConflict, ReviewClosed) as err:
        print(f"evchain: refused: {err}", file=sys.stderr)
        return REFUSED
    except UnknownCase as err:
        print(f"evchain: error: {err}", file=sys.stderr)
        return 2
    except (InvalidEdit, ValidationError, json.JSONDecodeError) as err:
        first = str(err).splitlines()
        print(f"evchain: error: {' '.join(first[:3])}", file=sys.stderr)
        return 2
