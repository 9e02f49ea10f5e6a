"""The `openai` chat model: any OpenAI-compatible server over HTTP (vLLM first, llama.cpp's server too).

Structured output goes through `response_format` with a strict `json_schema`: vLLM
silently ignores the older `guided_json` extra, so a request using it would come back
unconstrained. What the server returns as content is handed up unchanged, broken JSON
included: validating it, feeding errors back and falling back are the structured-call
helper's job, not the transport's.

Failures are told apart because the caller treats them differently:
nothing listening or a model the server does not serve -> `ChatModelUnavailable` (no retry
can help); timeouts, 5xx and dropped connections -> retried here with exponential backoff,
then `ChatModelError`.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from agents.llm.chat import ChatModelError, ChatModelUnavailable, Completion, register_chat_model

# Errors worth another attempt: the server was reached but did not answer, or answered 5xx.
_TRANSIENT = (httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


class OpenAIChatModel:
    backend = "openai"

    def __init__(
        self, base_url: str, model: str, *, timeout_s: float = 120.0, max_retries: int = 2, backoff_s: float = 1.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._client = httpx.Client(timeout=timeout_s)

    def complete(
        self, messages: list[dict[str, str]], json_schema: dict[str, Any], *, max_tokens: int, temperature: float = 0.0
    ) -> Completion:
        body = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": json_schema.get("title", "response"), "schema": json_schema, "strict": True},
            },
        }
        url = f"{self.base_url}/chat/completions"
        start = time.perf_counter()
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                response = self._client.post(url, json=body)
            except httpx.ConnectError as exc:
                raise ChatModelUnavailable(f"openai backend: no server at {self.base_url} ({_reason(exc)})") from exc
            except _TRANSIENT as exc:
                failure = f"{type(exc).__name__} from {url} ({_reason(exc)})"
                continue
            if response.status_code >= 500:
                failure = f"HTTP {response.status_code} from {url}: {_server_message(response)}"
                continue
            if response.status_code >= 400:
                message = _server_message(response)
                # vLLM answers 404 "The model `x` does not exist."; some servers say it with a 400.
                if response.status_code == 404 or "does not exist" in message:
                    raise ChatModelUnavailable(self._wrong_model(message))
                raise ChatModelError(f"openai backend: HTTP {response.status_code} from {url}: {message}")
            return self._completion(response, attempt, time.perf_counter() - start)
        raise ChatModelError(
            f"openai backend: {failure} after {self.max_retries + 1} attempts (timeout {self.timeout_s:g} s each)"
        )

    def _completion(self, response: httpx.Response, retries: int, latency_s: float) -> Completion:
        try:
            payload = response.json()
            text = payload["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ChatModelError(
                f"openai backend: {response.request.url} answered 200 without a chat completion ({type(exc).__name__})"
            ) from exc
        usage = payload.get("usage") or {}
        return Completion(
            text=text or "",
            model=payload.get("model", self.model),
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            latency_s=latency_s,
            retries=retries,
        )

    def _wrong_model(self, server_message: str) -> str:
        message = f"openai backend: model {self.model!r} is not served at {self.base_url}"
        try:
            served = [m["id"] for m in self._client.get(f"{self.base_url}/models").json()["data"]]
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return f"{message} ({server_message})"
        return f"{message}; served: {', '.join(served) or 'none'}"

    def close(self) -> None:
        self._client.close()


def _reason(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _server_message(response: httpx.Response) -> str:
    """The server's error text on one line (OpenAI style `{"error": {"message": ...}}` or plain text)."""
    try:
        error = response.json().get("error", {})
        text = error.get("message", "") if isinstance(error, dict) else str(error)
    except (ValueError, AttributeError):
        text = response.text
    return " ".join(text.split())[:300]


@register_chat_model("openai")
def openai_chat_model(
    *, base_url: str | None, model: str | None, timeout_s: float = 120.0, max_retries: int = 2
) -> OpenAIChatModel:
    if not base_url or not model:
        raise ChatModelUnavailable(
            "openai backend needs a server and a model name: --llm-base-url http://HOST:PORT/v1 --llm-model NAME"
        )
    return OpenAIChatModel(base_url, model, timeout_s=timeout_s, max_retries=max_retries)
