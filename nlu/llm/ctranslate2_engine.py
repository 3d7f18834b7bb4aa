"""CTranslate2 int8: the same weights as transformers, served about 3x faster on a CPU."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np

from nlu.llm.engine import GenerationOptions, IncrementalDecoder, Message
from voicedesk.config import LlmConfig
from voicedesk.errors import ModelError


class CTranslate2Engine:
    name = "ctranslate2"

    def __init__(self, model_dir: str, config: LlmConfig) -> None:
        import ctranslate2
        from transformers import AutoTokenizer

        self.model_ref = model_dir
        threads = config.threads or os.cpu_count() or 1
        try:
            self._generator = ctranslate2.Generator(model_dir, device="cpu",
                                                    compute_type=config.compute_type,
                                                    intra_threads=threads)
            self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelError(f"LLM {model_dir} could not be loaded by CTranslate2: "
                             f"{str(exc).splitlines()[0]}") from None
        eos = self.tokenizer.eos_token
        self._end_tokens = [t for t in {eos, "<|im_end|>", "<|endoftext|>"} if t and
                            t in self.tokenizer.get_vocab()]

    def render(self, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(list(messages), tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _tokens(self, text: str) -> list[str]:
        return self.tokenizer.convert_ids_to_tokens(self.encode(text))

    def next_token_logprobs(self, prompt: str) -> np.ndarray:
        out = self._generator.forward_batch([self._tokens(prompt)], return_log_probs=True)
        return np.asarray(out)[0, -1]

    def stream(self, messages: Sequence[Message], options: GenerationOptions) -> Iterator[str]:
        decoder = IncrementalDecoder(self.tokenizer)
        sampling = {"sampling_topk": 1} if options.temperature <= 0 else {
            "sampling_topk": 50, "sampling_temperature": options.temperature}
        for step in self._generator.generate_tokens(
            self._tokens(self.render(messages)),
            max_length=options.max_new_tokens,
            end_token=self._end_tokens,
            repetition_penalty=options.repetition_penalty,
            **sampling,
        ):
            if step.token in self._end_tokens:
                break
            piece = decoder.push(step.token_id)
            if piece:
                yield piece

    def score(self, prompt: str, continuations: Sequence[str]) -> list[float]:
        prompt_tokens = self._tokens(prompt)
        batch = [prompt_tokens + self._tokens(c) for c in continuations]
        results = self._generator.score_batch(batch)
        # log_probs[i] is the log-probability of token i+1 given tokens 0..i.
        return [sum(r.log_probs[len(prompt_tokens) - 1:]) for r in results]
