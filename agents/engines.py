"""Batch engines: where `process_case` runs. Same jobs in, same CaseResults out, whatever the engine.

* `local`: in this process (`workers=1`), or in `workers` worker processes
  started once each, so every worker loads the components once (agents/resources.py
  caches per process).
* `ray`: Ray tasks on a Ray cluster (`address`), or on a local Ray with
  `workers` CPUs. Ray is an optional extra (`pip install evidencechain[ray]`).

A worker process that dies (a crash in a native decoder, the OOM killer) fails
only the case it held: the local engine runs the cases that were in flight again,
each alone, and the rest in a fresh pool.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

from agents.context import Settings
from agents.runner import CaseJob, CaseResult, process_case
from schemas.errors import InputError
from toolkit.registry import Registry

OnResult = Callable[[CaseResult], None]
Engine = Callable[..., None]
ENGINES: Registry[Engine] = Registry("batch engine", missing=ValueError)
RAY_TASK_CPUS = 1


def _share_cores(workers: int) -> None:
    """Threads per worker so that the workers together use the cores once, not workers times over.

    Torch has its own pool; BLAS and OpenMP (numpy, faiss) are capped through threadpoolctl.
    """
    _limit_threads(max(1, (os.cpu_count() or 1) // workers))


def _limit_threads(threads: int) -> None:
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)


_started = None  # in a worker process: where it announces each case it starts


def _worker_init(workers: int, started) -> None:
    global _started
    _started = started
    _share_cores(workers)


def _tracked_case(job: CaseJob, settings: Settings) -> CaseResult:
    _started.put(job.case_dir)  # SimpleQueue: written before the case runs, so a crash cannot lose it
    return process_case(job, settings)


def _died(job: CaseJob) -> CaseResult:
    return CaseResult(job.case_id, job.case_dir, "error", "worker process died while running this case")


@ENGINES.register("local")
def run_local(jobs: list[CaseJob], settings: Settings, *, workers: int, on_result: OnResult, address=None) -> None:
    if address is not None:
        raise InputError("--address", "engine", "the local engine takes no cluster address; use --engine ray")
    if workers <= 1:
        for job in jobs:
            on_result(process_case(job, settings))
        return
    # spawn: a forked child would inherit torch's thread pools mid-state.
    context = multiprocessing.get_context("spawn")
    rounds = [(list(jobs), workers)]
    idle_deaths = 0
    while rounds:
        batch, size = rounds.pop(0)
        unfinished, in_flight = _pool_round(batch, settings, size, context, on_result)
        if not unfinished:
            continue
        if not in_flight:
            # A worker died between cases; twice in a row means workers cannot even start.
            idle_deaths += 1
            if idle_deaths > 1:
                for job in unfinished:
                    on_result(CaseResult(job.case_id, job.case_dir, "error", "worker processes keep dying"))
                return
            rounds.insert(0, (unfinished, size))
            continue
        idle_deaths = 0
        rest = [j for j in unfinished if j not in in_flight]
        if size == 1:
            # Alone in its worker, the case in flight is the one that killed it.
            for job in in_flight:
                on_result(_died(job))
            rounds[:0] = [(rest, 1)] if rest else []
        else:
            # One of the cases in flight killed a worker (a native crash, the OOM killer): each runs
            # again alone, the others go on in parallel.
            rounds[:0] = [(in_flight, 1), (rest, workers)] if rest else [(in_flight, 1)]


def _pool_round(batch, settings, size, context, on_result) -> tuple[list[CaseJob], list[CaseJob]]:
    """Run `batch` in a pool of `size`; when a worker dies, the unfinished cases and those of them in flight."""
    started = context.SimpleQueue()
    begun: set[str] = set()
    finished: set[str] = set()
    broken = False
    with ProcessPoolExecutor(size, mp_context=context, initializer=_worker_init, initargs=(size, started)) as pool:
        futures = {pool.submit(_tracked_case, job, settings): job for job in batch}
        for future in as_completed(futures):
            while not started.empty():  # drained as it goes: a full pipe would block the workers
                begun.add(started.get())
            try:
                result = future.result()
            except BrokenProcessPool:
                broken = True
                continue
            finished.add(futures[future].case_dir)
            on_result(result)
    while not started.empty():
        begun.add(started.get())
    if not broken:
        return [], []
    unfinished = [j for j in batch if j.case_dir not in finished]
    return unfinished, [j for j in unfinished if j.case_dir in begun]


@ENGINES.register("ray")
def run_ray(jobs: list[CaseJob], settings: Settings, *, workers: int, on_result: OnResult, address=None) -> None:
    try:
        import ray
    except ImportError:
        raise InputError("--engine", "ray", "Ray is not installed; pip install 'evidencechain[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        if address is None:
            # A local Ray: workers see this process's environment, so they import this code.
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(_import_path())}})
        else:
            ray.init(address=address, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=RAY_TASK_CPUS, max_retries=1)(_ray_case)
        refs = {task.remote(job, settings): job for job in jobs}
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                job = refs.pop(ref)
                try:
                    on_result(ray.get(ref))
                except (ray.exceptions.WorkerCrashedError, ray.exceptions.RayTaskError) as exc:
                    on_result(CaseResult(job.case_id, job.case_dir, "error", f"Ray task failed: {type(exc).__name__}"))
    finally:
        if started_here:
            ray.shutdown()


def _import_path() -> list[str]:
    import agents

    root = os.path.dirname(os.path.dirname(os.path.abspath(agents.__file__)))
    return [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]


def _ray_case(job: CaseJob, settings: Settings) -> CaseResult:
    _limit_threads(RAY_TASK_CPUS)  # the CPUs Ray reserved for this task, not the whole node
    return process_case(job, settings)
