"""Batch engines: where `process_case` runs. Same jobs in, same CaseResults out, whatever the engine.

* `local`: in this process (`workers=1`), or in `workers` worker processes
  started once each, so every worker loads the components once (agents/resources.py
  caches per process).
* `ray`: Ray tasks on a Ray cluster (`address`), or on a local Ray with
  `workers` CPUs. Ray is an optional extra (`pip install evidencechain[ray]`).

A worker process that dies (a crash in a native decoder, the OOM killer) fails
only the cases it held: the local engine restarts its pool for the rest.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
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


def _died(job: CaseJob, how: str) -> CaseResult:
    return CaseResult(job.case_id, job.case_dir, "error", f"worker process died while running this case ({how})")


@ENGINES.register("local")
def run_local(jobs: list[CaseJob], settings: Settings, *, workers: int, on_result: OnResult, address=None) -> None:
    if address is not None:
        raise InputError("--address", "engine", "the local engine takes no cluster address; use --engine ray")
    if workers <= 1:
        for job in jobs:
            on_result(process_case(job, settings))
        return
    pending = list(jobs)
    suspects: set[str] = set()  # cases in flight when a worker died once already
    # spawn: a forked child would inherit torch's thread pools mid-state.
    context = multiprocessing.get_context("spawn")
    while pending:
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_share_cores, initargs=(workers,)) as pool:
            futures = {pool.submit(process_case, job, settings): job for job in pending}
            pending = []
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for future in done:
                    job = futures.pop(future)
                    try:
                        on_result(future.result())
                    except BrokenProcessPool:
                        # Which case killed the worker is unknown: each in-flight case gets one more try.
                        if job.case_dir in suspects:
                            on_result(_died(job, "twice"))
                        else:
                            suspects.add(job.case_dir)
                            pending.append(job)


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
