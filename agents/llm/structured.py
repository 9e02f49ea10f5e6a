"""The one structured-call helper every agent that calls a language model goes through.

Render the prompt from prompts/ (`<template>.system.j2` + `<template>.user.j2`), decode under a
JSON Schema through a chat model chosen by name, validate with pydantic plus the caller's own
checks, feed the problems back on a bounded retry, and fall back to the caller's deterministic
value when the model is unavailable or never produces an acceptable answer. Every call returns an
`LLMCall` record for `provenance.llm_calls`, whichever way it went.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from agents import resources
from agents.context import Settings
from agents.llm.chat import ChatModelError, ChatModelUnavailable
from prompts import render_template
from schemas.report import LLMCall

T = TypeVar("T", bound=BaseModel)
MAX_ERROR_CHARS = 300
MAX_PROBLEMS_FED_BACK = 5


@dataclass(frozen=True)
class StructuredTask(Generic[T]):
    """One question for a model: the prompt templates and their context, and the answer's type and schema."""

    agent: str  # who asks, e.g. 'drafting' (recorded in provenance)
    template: str  # prompts/<template>.system.j2 and prompts/<template>.user.j2
    context: Mapping[str, Any]
    output: type[T]
    json_schema: dict[str, Any]
    check: Callable[[T], list[str]] = field(default=lambda _: [])  # problems pydantic cannot see (per-case rules)

    def messages(self) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": render_template(f"{self.template}.system.j2", **self.context)},
            {"role": "user", "content": render_template(f"{self.template}.user.j2", **self.context)},
        ]


@dataclass(frozen=True)
class StructuredResult(Generic[T]):
    value: T
    accepted: bool  # False: `value` is the fallback
    call: LLMCall


def prompt_sha256(messages: list[dict[str, str]]) -> str:
    return hashlib.sha256(json.dumps(messages, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


def validation_problems(task: StructuredTask[T], text: str) -> tuple[T | None, list[str]]:
    """The parsed answer and what is wrong with it (one line per problem; empty = accepted)."""
    try:
        value = task.output.model_validate_json(text)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in e['loc']) or '(reply)'}: {e['msg']}" for e in exc.errors(include_url=False)
        ]
        return None, problems
    return value, task.check(value)


def one_line(text: str) -> str:
    return " ".join(text.split())[:MAX_ERROR_CHARS]


def structured_call(
    task: StructuredTask[T], fallback: Callable[[], T], settings: Settings, backend: str
) -> StructuredResult[T]:
    """Ask the chat model `backend` (built once per process from `settings`); never raises for a model's failure."""
    messages = task.messages()
    record: dict[str, Any] = {
        "agent": task.agent, "backend": backend, "model": settings.llm_model or "(not set)",
        "prompt_sha256": prompt_sha256(messages), "prompt_tokens": 0, "completion_tokens": 0, "retries": 0,
    }
    start = time.perf_counter()
    error = "no attempt made"
    try:
        chat = resources.chat_model(settings, backend)
    except ChatModelUnavailable as exc:
        return _fallback(fallback, record, start, one_line(str(exc)))
    record["model"] = chat.model
    transport_retries = 0  # inside the backend, on top of the attempts made here
    for attempt in range(settings.llm_max_retries + 1):
        record["retries"] = attempt + transport_retries
        try:
            completion = chat.complete(
                messages, task.json_schema, max_tokens=settings.llm_max_new_tokens, temperature=0.0
            )
        except ChatModelError as exc:
            # Unavailable, or a transport failure the backend already retried with backoff (timeouts, 5xx):
            # asking again here would multiply its attempts (and its timeouts) by ours.
            return _fallback(fallback, record, start, one_line(str(exc)))
        record["prompt_tokens"] += completion.prompt_tokens
        record["completion_tokens"] += completion.completion_tokens
        transport_retries += completion.retries
        record["retries"] = attempt + transport_retries
        value, problems = validation_problems(task, completion.text)
        if value is not None and not problems:
            return StructuredResult(value=value, accepted=True, call=LLMCall(
                **record, latency_s=round(time.perf_counter() - start, 3), outcome="accepted"
            ))
        error = one_line(f"invalid reply: {'; '.join(problems)}")
        # Only the latest reply and its problems go back, so the prompt does not grow with every retry.
        feedback = render_template("structured.retry.j2", problems=problems[:MAX_PROBLEMS_FED_BACK])
        messages = [*messages[:2], {"role": "assistant", "content": completion.text}, {"role": "user", "content": feedback}]
    return _fallback(fallback, record, start, error)


def _fallback(fallback: Callable[[], T], record: dict[str, Any], start: float, error: str) -> StructuredResult[T]:
    call = LLMCall(**record, latency_s=round(time.perf_counter() - start, 3), outcome="fallback", error=error)
    return StructuredResult(value=fallback(), accepted=False, call=call)
