"""The one-screen summary printed after a batch."""

from __future__ import annotations

from pathlib import Path

from agents.runner import BATCH_SUMMARY, CaseResult, grounding_totals


def exit_code(results: list[CaseResult]) -> int:
    codes = {r.exit_code for r in results}
    return 1 if 1 in codes else (2 if 2 in codes else 0)


def format_summary(results: list[CaseResult]) -> str:
    header = f"{'case':<16} {'status':<9} {'grade':<22} {'subtype':<32} {'first target':<16} flags"
    lines = [header, "-" * len(header)]
    for r in results:
        h = r.headline
        if r.status == "ok":
            lines.append(
                f"{r.case_id:<16} {r.status:<9} {str(h.get('grade', '-')):<22} {str(h.get('molecular_subtype', '-')):<32} "
                f"{str(h.get('first_target') or '-'):<16} {', '.join(h.get('flags', [])) or '-'}"
            )
        else:
            lines.append(f"{r.case_id:<16} {r.status:<9} {r.error}")
    total = sum(sum(r.timings_s.values()) for r in results)
    ok = sum(r.status == "ok" for r in results)
    reused = sum(r.reused for r in results)
    kept = f" ({reused} already up to date, kept)" if reused else ""
    lines.append(f"{ok}/{len(results)} cases reported{kept} in {total:.1f} s")
    g = grounding_totals(results)
    lines.append(f"claims verified: {g['claims_passed']}/{g['claims_checked']} passed in {g['sentences_checked']} sentences; "
                 f"{g['sentences_stripped']} sentences stripped (replaced or removed)")
    return "\n".join(lines)


def print_summary(results: list[CaseResult], out_dir: Path) -> None:
    print(format_summary(results))
    print(f"reports: {out_dir}/<case_id>/report.json|.en.md|.zh.md|.html   summary: {out_dir / BATCH_SUMMARY}")
