"""Running the graph over one case or a cohort: per-case guard, resume, locks, batch summary.

`process_case` is the one per-case function every engine runs (in this process,
in worker processes, or as Ray tasks). Everything about a case, reading its id
included, happens inside its guard, so no case can stop a batch. A report is
skipped when it was made from the same input files with the same settings.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from tqdm import tqdm

from agents.consistency.grounding import fmt_probability
from agents.context import Settings
from agents.output import FINGERPRINT_FILE, case_lock, clean_leftovers, leftover_case_ids, write_json
from agents.provenance import code_version
from fusion_models.inputs import load_manifest
from schemas.errors import InputError
from schemas.report import EvidenceChainReport
from toolkit.atomic import atomic_write_text
from toolkit.case_files import folder_fingerprint

BATCH_SUMMARY = "batch_summary.json"
LOGS_DIR = "logs"
# The summary is rewritten whole; for big cohorts at most this often (a killed run loses at most
# this much of it, and the cases behind it are skipped on the next run by their fingerprints).
SUMMARY_EVERY_S = 1.0
ERROR_CHARS = 300


@dataclass
class CaseResult:
    case_id: str
    case_dir: str
    status: str  # "ok" | "bad_input" | "error"
    error: str | None = None
    timings_s: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    headline: dict[str, object] = field(default_factory=dict)
    reused: bool = False  # an up-to-date report was already there
    cpu_s: float | None = None  # CPU time of the process that ran the case, all its threads
    log: str | None = None  # traceback file of an internal error

    @property
    def exit_code(self) -> int:
        return {"ok": 0, "bad_input": 2}.get(self.status, 1)


@dataclass(frozen=True)
class CaseJob:
    """One case for an engine: everything process_case needs, picklable."""

    case_dir: str
    case_id: str
    out_dir: str
    settings_fingerprint: str
    force: bool = False
    timeout_s: float | None = None


class CaseTimeout(Exception):
    pass


def safe_name(folder_name: str) -> str:
    """A folder name usable as a case id in OUT (log file, summary) when case.json cannot give one."""
    cleaned = "".join(c if c.isalnum() or c in "-_" else "_" for c in folder_name)[:64]
    return cleaned or "_"


def list_case_dirs(cohort_dir: Path, exclude: Path | None = None) -> list[Path]:
    """Case folders: `COHORT/cases/*` when that folder exists (cohort with labels beside), else `COHORT/*`.

    `exclude` (the output folder, when it lies inside a flat cohort) is never a case, nor is
    any other folder holding a batch summary (the reports of an earlier run with another OUT).
    """
    if not cohort_dir.is_dir():
        raise InputError(str(cohort_dir), "cohort", "not a folder")
    root = cohort_dir / "cases" if (cohort_dir / "cases").is_dir() else cohort_dir
    skip = os.path.realpath(exclude) if exclude is not None else None
    return sorted(
        p for p in root.iterdir()
        if not p.name.startswith(".") and p.is_dir() and os.path.realpath(p) != skip
        and not (p / BATCH_SUMMARY).exists()
    )


def check_out_dir(out_dir: Path, source: Path, case_dirs: list[Path]) -> None:
    """Fail before any case runs when OUT cannot hold reports: a file, not writable, or an input folder.

    OUT may sit beside the case folders of a flat cohort (it is then not listed as a case),
    but not be the cohort folder itself nor lie inside a case folder, whose fingerprint it would change.
    """
    out = Path(os.path.realpath(out_dir))
    if os.path.lexists(out_dir) and not out.is_dir():
        raise InputError(str(out_dir), "--out", "exists and is not a folder")
    inputs = [Path(os.path.realpath(p)) for p in case_dirs]
    if out == Path(os.path.realpath(source)) or any(out == p or p in out.parents for p in inputs):
        raise InputError(str(out_dir), "--out", f"is an input folder or inside one ({source})")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(str(out_dir), "--out", f"cannot create: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError(str(out_dir), "--out", "not writable: Permission denied")


def settings_fingerprint(settings: Settings) -> str:
    """What makes a report: the settings that change its content, the checkpoint's bytes, the code version."""
    config = settings.model_dump(mode="json")
    config.pop("cache_dir")  # where an index is cached changes nothing in a report
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    checkpoint = Path(settings.checkpoint)
    if checkpoint.is_file():
        with open(checkpoint, "rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    digest.update(code_version().encode())
    return digest.hexdigest()


def _headline(report: EvidenceChainReport) -> dict[str, object]:
    by_task = {c.task: c for c in report.conclusions}
    out: dict[str, object] = {
        f"{task}": f"{c.label} ({fmt_probability(c.probability)}, {c.confidence})" for task, c in by_task.items()
    }
    out["flags"] = [f.kind for f in report.consistency_flags if f.kind not in ("missing_modality",)]
    out["first_target"] = report.sampling_plan[0].unit_id if report.sampling_plan else None
    out["missing"] = list(report.modalities.missing)
    out["review"] = report.review.status
    return out


@lru_cache(maxsize=1)
def _graph():
    from agents.graph import build_graph

    return build_graph()


@contextmanager
def _checkpointed_graph(out_dir: Path, settings: Settings):
    """The graph with the output folder's review checkpointer (interactive review), else the plain one."""
    if not settings.interactive_review:
        yield _graph()
        return
    from agents.graph import build_graph
    from agents.review.checkpoint import open_checkpointer

    with open_checkpointer(out_dir, settings) as saver:
        yield build_graph(saver)


@contextmanager
def _deadline(seconds: float | None) -> Iterator[None]:
    """Raise CaseTimeout in this thread after `seconds` (main thread only: signals are delivered there)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise CaseTimeout(f"case took longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _reusable(final: Path, fingerprint: dict[str, str]) -> EvidenceChainReport | None:
    """The existing report when it was made from these inputs with these settings, else None."""
    try:
        stored = json.loads((final / FINGERPRINT_FILE).read_text(encoding="utf-8"))
        if stored != fingerprint:
            return None
        return EvidenceChainReport.model_validate_json((final / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _run_graph(case_dir: Path, out_dir: Path, settings: Settings, fingerprint: dict[str, str], result: CaseResult):
    from agents.review.checkpoint import thread_id

    state = {"case_dir": str(case_dir), "out_dir": str(out_dir), "fingerprint": fingerprint}
    thread = thread_id(result.case_id, fingerprint["inputs"])
    started = time.perf_counter()
    with _checkpointed_graph(out_dir, settings) as graph:
        if graph.checkpointer is not None:
            graph.checkpointer.delete_thread(thread)  # a run that is not reused starts its review afresh
        _stream(graph, state, {"configurable": {"thread_id": thread}}, settings, result, started)


def _stream(graph, state, config, settings: Settings, result: CaseResult, started: float) -> None:
    for update in graph.stream(state, config, context=settings, stream_mode="updates"):
        now = time.perf_counter()
        for node_name, partial in update.items():
            if node_name == "__interrupt__":  # paused for review: the draft is written
                continue
            result.timings_s[node_name] = round(now - started, 4)
            if partial and "report" in partial:
                result.headline = _headline(partial["report"])
            if partial and "outputs" in partial:
                result.outputs = partial["outputs"]
        started = now


def _log_traceback(out_dir: Path, case_id: str) -> str | None:
    path = out_dir / LOGS_DIR / f"{case_id}.log"
    try:
        atomic_write_text(path, traceback.format_exc())
    except OSError:
        return None
    return str(path)


def process_case(job: CaseJob, settings: Settings) -> CaseResult:
    """Report one case under its lock, or reuse an up-to-date report; never raises for a case's problem."""
    out_dir, case_dir = Path(job.out_dir), Path(job.case_dir)
    result = CaseResult(case_id=job.case_id, case_dir=job.case_dir, status="ok")
    cpu_started = time.process_time()
    try:
        with _deadline(job.timeout_s), case_lock(out_dir, job.case_id):
            clean_leftovers(out_dir, job.case_id)
            fingerprint = {"inputs": folder_fingerprint(case_dir), "settings": job.settings_fingerprint}
            reused = None if job.force else _reusable(out_dir / job.case_id, fingerprint)
            if reused is not None:
                result.reused, result.headline = True, _headline(reused)
                result.outputs = {p.name: str(p) for p in sorted((out_dir / job.case_id).glob("report*"))}
            else:
                _run_graph(case_dir, out_dir, settings, fingerprint, result)
    except InputError as err:
        result.status, result.error = "bad_input", str(err)
    except Exception as err:  # noqa: BLE001 - one case's failure is recorded, the batch goes on
        result.status = "error"
        result.error = (f"{type(err).__name__}: {err}".splitlines() or [type(err).__name__])[0][:ERROR_CHARS]
        result.log = _log_traceback(out_dir, job.case_id)
    result.cpu_s = round(time.process_time() - cpu_started, 4)
    return result


def identify(case_dir: Path) -> str:
    """The case id from case.json (read through the bounded reader); InputError when it has none."""
    return load_manifest(case_dir).case_id


def plan_jobs(
    case_dirs: list[Path], out_dir: Path, settings_fp: str, *, force: bool, timeout_s: float | None
) -> tuple[list[CaseJob], list[CaseResult]]:
    """Jobs for the cases whose id is readable and unique; results for the others (second of a duplicate id)."""
    jobs: list[CaseJob] = []
    rejected: list[CaseResult] = []
    first_folder: dict[str, Path] = {}
    for case_dir in case_dirs:
        try:
            case_id = identify(case_dir)
            if case_id in first_folder:
                raise InputError(
                    "case.json", "case_id", f"{case_id!r} is also the id of {first_folder[case_id]}; ids must be unique"
                )
            first_folder[case_id] = case_dir
        except InputError as err:
            rejected.append(CaseResult(safe_name(case_dir.name), str(case_dir), "bad_input", str(err)))
            continue
        except Exception as err:  # noqa: BLE001 - the batch goes on; the error is listed
            message = f"{type(err).__name__}: {err}".splitlines()[0][:ERROR_CHARS]
            rejected.append(CaseResult(safe_name(case_dir.name), str(case_dir), "error", message))
            continue
        jobs.append(CaseJob(str(case_dir), case_id, str(out_dir), settings_fp, force, timeout_s))
    return jobs, rejected


def clean_out(out_dir: Path) -> None:
    """Leftovers of killed runs for cases no live run holds (a case's own run cleans again under its lock)."""
    for case_id in sorted(leftover_case_ids(out_dir)):
        with case_lock(out_dir, case_id, blocking=False) as held:
            if held:
                clean_leftovers(out_dir, case_id)


class Summary:
    """batch_summary.json, rewritten atomically as results arrive; lists pending cases until complete."""

    def __init__(self, cohort_dir: Path, out_dir: Path, jobs: list[CaseJob], rejected: list[CaseResult]):
        self.path = out_dir / BATCH_SUMMARY
        self.cohort = str(cohort_dir)
        self.results: list[CaseResult] = list(rejected)
        self.pending = {j.case_dir: j for j in jobs}
        self.last_write = 0.0
        self.write()

    def add(self, result: CaseResult) -> None:
        self.results.append(result)
        self.pending.pop(result.case_dir, None)
        if not self.pending or time.monotonic() - self.last_write >= SUMMARY_EVERY_S:
            self.write()

    def write(self) -> None:
        results = self.sorted()
        write_json(
            self.path,
            {
                "cohort": self.cohort,
                "complete": not self.pending,
                "n_cases": len(results) + len(self.pending),
                "n_ok": sum(r.status == "ok" for r in results),
                "n_reused": sum(r.reused for r in results),
                "n_failed": sum(r.status != "ok" for r in results),
                "n_awaiting_review": sum(r.headline.get("review") == "awaiting_review" for r in results),
                "cases": [asdict(r) for r in results],
                "pending": sorted(self.pending),
            },
        )
        self.last_write = time.monotonic()

    def sorted(self) -> list[CaseResult]:
        return sorted(self.results, key=lambda r: r.case_dir)


def run_case(case_dir: Path, out_dir: Path, settings: Settings, *, timeout_s: float | None = None) -> CaseResult:
    """One case, always redone (`evchain report`)."""
    try:
        check_out_dir(out_dir, case_dir, [Path(case_dir)])
    except InputError as err:
        return CaseResult(safe_name(Path(case_dir).name), str(case_dir), "bad_input", str(err))
    (jobs, rejected) = plan_jobs([Path(case_dir)], out_dir, settings_fingerprint(settings), force=True, timeout_s=timeout_s)
    return rejected[0] if rejected else process_case(jobs[0], settings)


def run_batch(
    cohort_dir: Path,
    out_dir: Path,
    settings: Settings,
    *,
    workers: int = 1,
    engine: str = "local",
    force: bool = False,
    timeout_s: float | None = None,
    address: str | None = None,
    progress: bool = True,
) -> list[CaseResult]:
    """Every case folder of a cohort; OUT is checked before any case runs (InputError naming --out)."""
    from agents.engines import ENGINES

    run_engine = ENGINES.get(engine)
    cohort_dir, out_dir = Path(cohort_dir), Path(out_dir)
    case_dirs = list_case_dirs(cohort_dir, exclude=out_dir)
    check_out_dir(out_dir, cohort_dir, case_dirs)
    clean_out(out_dir)
    jobs, rejected = plan_jobs(case_dirs, out_dir, settings_fingerprint(settings), force=force, timeout_s=timeout_s)
    summary = Summary(cohort_dir, out_dir, jobs, rejected)
    bar = tqdm(total=len(case_dirs), desc="cases", unit="case", disable=not progress, file=sys.stderr)
    bar.update(len(rejected))

    def on_result(result: CaseResult) -> None:
        summary.add(result)
        bar.update(1)
        if result.status == "error":
            where = f" (traceback: {result.log})" if result.log else ""
            tqdm.write(f"evchain: {result.case_id}: internal error: {result.error}{where}", file=sys.stderr)

    try:
        run_engine(jobs, settings, workers=workers, on_result=on_result, address=address)
    finally:
        bar.close()
        summary.write()
    return summary.sorted()
