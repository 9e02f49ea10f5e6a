"""The graph served by `langgraph dev` (langgraph.json), driven with the langgraph_sdk client through
the review pause and its resume, on one demo case."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from schemas.review import Approve, ReviewStep

ROOT = Path(__file__).resolve().parents[1]
CASE = "DEMO-004"
START_TIMEOUT_S = 180
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served_graph():
    """`langgraph dev` on a free port (it moves to another when that one is taken: the port is read from its log)."""
    cli = Path(sys.executable).parent / "langgraph"
    if not cli.exists():
        pytest.skip("langgraph-cli[inmem] is not installed (test extra)")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGGRAPH_NO_VERSION_CHECK": "true"}
    proc = subprocess.Popen(
        [str(cli), "dev", "--no-browser", "--no-reload", "--allow-blocking", "--port", str(_free_port()),
         "--config", str(ROOT / "langgraph.json")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    log: list[str] = []
    try:
        deadline, url = time.monotonic() + START_TIMEOUT_S, None
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                log.append(lines.get(timeout=1))
            except queue.Empty:
                continue
            # The banner colours the URL: "API: ESC[36mhttp://127.0.0.1:PORTESC[0m".
            found = re.search(r"API:\s*(http://[\w.:]+)", ANSI.sub("", log[-1]))
            url = found[1] if found else None
        assert url, "langgraph dev did not start:\n" + "".join(log[-30:])
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_served_graph_pauses_for_review_and_resumes_to_approval(served_graph, demo_cohort, settings, tmp_path):
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=served_graph)
    context = {**settings.model_dump(mode="json"), "interactive_review": True}
    thread = client.threads.create()["thread_id"]
    client.runs.wait(thread, "evidencechain", input={"case_dir": str(demo_cohort / "cases" / CASE), "out_dir": str(tmp_path)},
                     context=context)
    state = client.threads.get_state(thread)
    assert state["next"] == ["human_review"]
    [pending] = state["interrupts"]
    assert (pending["value"]["case_id"], pending["value"]["status"]) == (CASE, "awaiting_review")

    step = ReviewStep(actor="dr.li", time="2026-01-02T03:04:05Z", decision=Approve(comment="served"))
    client.runs.wait(thread, "evidencechain", command={"resume": step.model_dump(mode="json")}, context=context)
    final = client.threads.get_state(thread)
    assert final["next"] == []
    assert final["values"]["report"]["review"]["status"] == "approved"
    assert '"status": "approved"' in (tmp_path / CASE / "report.json").read_text()
