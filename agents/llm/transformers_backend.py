"""The `transformers` chat model: a local model folder, its chat template, JSON-Schema-constrained decoding.

xgrammar compiles the JSON Schema against the model's tokenizer and masks, at every step, the
tokens that would leave the schema, so the reply parses and every enum (evidence ids, tasks) holds
whatever the model would rather write. Decoding is greedy: the same prompt gives the same reply.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from agents.llm.chat import ChatModelError, ChatModelUnavailable, Completion, register_chat_model

# One torch thread decodes a small model as fast as two here and leaves a core to the rest of the batch.
DECODE_THREADS = 1


class TransformersChatModel:
    backend = "transformers"

    def __init__(self, folder: Path) -> None:
        from fusion_models.encoders.torchvision_compat import ensure_torchvision

        ensure_torchvision()  # transformers imports torchvision when it is installed
        import torch
        import xgrammar
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        self.model = folder.name
        self._torch = torch
        self._xgrammar = xgrammar
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(folder)
            self._lm = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
            vocab_size = AutoConfig.from_pretrained(folder).vocab_size
        except (OSError, ValueError) as exc:
            raise ChatModelUnavailable(f"Settings.llm_model: {folder} is not a loadable model folder ({exc})") from exc
        # The model's vocabulary can be padded beyond the tokenizer's; the mask must cover all of it.
        info = xgrammar.TokenizerInfo.from_huggingface(self._tokenizer, vocab_size=vocab_size)
        self._compiler = xgrammar.GrammarCompiler(info)

    def complete(
        self, messages: list[dict[str, str]], json_schema: dict[str, Any], *, max_tokens: int, temperature: float = 0.0
    ) -> Completion:
        if temperature != 0.0:
            raise ChatModelError(f"transformers backend decodes greedily; temperature {temperature} is not supported")
        torch, xgr = self._torch, self._xgrammar
        start = time.perf_counter()
        try:
            # Compact JSON: free whitespace lets a weak model spend its token budget on blanks.
            grammar = self._compiler.compile_json_schema(json.dumps(json_schema), any_whitespace=False)
        except (RuntimeError, ValueError) as exc:
            raise ChatModelError(f"xgrammar cannot compile the JSON Schema: {' '.join(str(exc).split())[:200]}") from exc
        encoded = self._tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        prompt_tokens = int(encoded["input_ids"].shape[1])
        threads = torch.get_num_threads()
        torch.set_num_threads(DECODE_THREADS)
        try:
            with torch.inference_mode():
                output = self._lm.generate(
                    **encoded, max_new_tokens=max_tokens, do_sample=False,
                    logits_processor=[xgr.contrib.hf.LogitsProcessor(grammar)],  # one per generate() call
                    pad_token_id=self._tokenizer.pad_token_id or self._tokenizer.eos_token_id,
                )
        finally:
            torch.set_num_threads(threads)
        generated = output[0, prompt_tokens:]
        return Completion(
            text=self._tokenizer.decode(generated, skip_special_tokens=True),
            model=self.model,
            prompt_tokens=prompt_tokens,
            completion_tokens=int(generated.shape[0]),
            latency_s=time.perf_counter() - start,
        )


@register_chat_model("transformers")
def transformers_chat_model(*, model: str | None, **server_options: Any) -> TransformersChatModel:
    """`model` is a local folder; `server_options` (base_url, timeout_s, max_retries) configure served backends only."""
    if not model or not Path(model).is_dir():
        raise ChatModelUnavailable(
            f"Settings.llm_model: {model or '(not set)'} is not a local model folder "
            "(prepare one with: python -m agents.llm.models prepare smollm2)"
        )
    return TransformersChatModel(Path(model))
