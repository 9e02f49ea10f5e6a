"""The `openai` chat model against real loopback servers: what it sends, and each way a server can fail.

vLLM itself is driven in tests/test_vllm_integration.py; these servers stand in for the
failures a healthy vLLM will not produce on demand (a hang, a 500, broken JSON content).
"""

from __future__ import annotations

import pytest
from loopback import Script, chat_completion, scripted_server, silent_server

from agents.llm.chat import ChatModelError, ChatModelUnavailable, create_chat_model, list_chat_models
from agents.llm.openai_backend import OpenAIChatModel
from agents.llm.vllm_server import free_port

SCHEMA = {
    "title": "Pick", "type": "object", "additionalProperties": False, "required": ["id"],
    "properties": {"id": {"type": "string", "enum": ["S1", "H2"]}},
}
MESSAGES = [{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": "Pick one."}]


def model(url: str, **kw) -> OpenAIChatModel:
    return OpenAIChatModel(url, "served-model", **{"timeout_s": 5.0, "max_retries": 2, "backoff_s": 0.01, **kw})


def test_registered_by_name_and_needs_url_and_model():
    assert "openai" in list_chat_models()
    with pytest.raises(ChatModelUnavailable, match="--llm-base-url"):
        create_chat_model("openai", base_url=None, model="m")
    chat = create_chat_model("openai", base_url="http://127.0.0.1:1/v1/", model="m", timeout_s=3.0, max_retries=4)
    assert (chat.base_url, chat.timeout_s, chat.max_retries) == ("http://127.0.0.1:1/v1", 3.0, 4)


def test_sends_strict_json_schema_response_format_and_reads_usage():
    script = Script([chat_completion('{"id": "S1"}', prompt_tokens=23, completion_tokens=5)])
    with scripted_server(script) as url:
        completion = model(url).complete(MESSAGES, SCHEMA, max_tokens=64)
    assert completion.text == '{"id": "S1"}'
    assert (completion.prompt_tokens, completion.completion_tokens, completion.retries) == (23, 5, 0)
    assert completion.model == "served-model" and completion.latency_s > 0
    (sent,) = script.requests
    assert sent["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "Pick", "schema": SCHEMA, "strict": True},
    }
    assert "guided_json" not in sent  # vLLM ignores it silently
    assert (sent["model"], sent["messages"], sent["max_tokens"], sent["temperature"]) == ("served-model", MESSAGES, 64, 0.0)


def test_broken_json_content_is_returned_for_the_caller_to_validate():
    broken = '{"id": "S1", "id": "S1", "id'
    with scripted_server(Script([chat_completion(broken)])) as url:
        assert model(url).complete(MESSAGES, SCHEMA, max_tokens=64).text == broken


def test_server_down_is_unavailable_at_once_naming_the_url():
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(ChatModelUnavailable) as err:
        model(url).complete(MESSAGES, SCHEMA, max_tokens=8)
    message = str(err.value)
    assert f"no server at {url}" in message and "\n" not in message


def test_hung_server_times_out_after_every_retry():
    with silent_server() as (url, accepted):
        with pytest.raises(ChatModelError) as err:
            model(url, timeout_s=0.3, max_retries=2).complete(MESSAGES, SCHEMA, max_tokens=8)
        assert len(accepted) == 3  # the first attempt and two retries, each on a new connection
    message = str(err.value)
    assert not isinstance(err.value, ChatModelUnavailable)
    assert "ReadTimeout" in message and "after 3 attempts" in message and "\n" not in message


def test_server_errors_are_retried_with_backoff_and_counted():
    script = Script([(500, {"error": {"message": "engine hiccup"}}), (503, {"error": {"message": "busy"}}),
                     chat_completion('{"id": "H2"}')])
    with scripted_server(script) as url:
        completion = model(url).complete(MESSAGES, SCHEMA, max_tokens=8)
    assert (completion.text, completion.retries, len(script.requests)) == ('{"id": "H2"}', 2, 3)


def test_server_errors_past_the_retries_fail_with_the_servers_message():
    with scripted_server(Script([(500, {"error": {"message": "engine\ndead"}})])) as url:
        with pytest.raises(ChatModelError, match=r"HTTP 500 .*engine dead after 2 attempts"):
            model(url, max_retries=1).complete(MESSAGES, SCHEMA, max_tokens=8)


def test_wrong_model_name_lists_the_served_models():
    # vLLM's answer to an unknown model name, word for word.
    not_found = (404, {"error": {"message": "The model `served-model` does not exist.", "type": "NotFoundError",
                                 "code": 404}})
    script = Script([not_found], served=["smollm2-135m-instruct", "qwen"])
    with scripted_server(script) as url:
        with pytest.raises(ChatModelUnavailable) as err:
            model(url).complete(MESSAGES, SCHEMA, max_tokens=8)
    assert str(err.value) == (
        f"openai backend: model 'served-model' is not served at {url}; served: smollm2-135m-instruct, qwen"
    )
    assert len(script.requests) == 1  # not retried


def test_a_request_the_server_refuses_is_an_error_without_retry():
    too_long = (400, {"error": {"message": "This model's maximum context length is 2048 tokens."}})
    script = Script([too_long])
    with scripted_server(script) as url:
        with pytest.raises(ChatModelError, match="HTTP 400 .*maximum context length is 2048"):
            model(url).complete(MESSAGES, SCHEMA, max_tokens=8)
    assert len(script.requests) == 1


def test_a_200_that_is_not_a_chat_completion_is_an_error():
    with scripted_server(Script([(200, {"object": "list", "data": []})])) as url:
        with pytest.raises(ChatModelError, match="without a chat completion"):
            model(url).complete(MESSAGES, SCHEMA, max_tokens=8)
