"""transformers + torch: the reference engine, and the one training/ fine-tunes."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence

import numpy as np

from nlu.llm.engine import GenerationOptions, Message
from voicedesk.config import LlmConfig
from voicedesk.errors import ModelError


class TransformersEngine:
    name = "transformers"

    def __init__(self, model: str, config: LlmConfig) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        if config.threads:
            torch.set_num_threads(config.threads)
        else:
            torch.set_num_threads(os.cpu_count() or 1)
        self.model_ref = model
        self._device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            self.model = AutoModelForCausalLM.from_pretrained(model).to(self._device).eval()
        except (OSError, ValueError) as exc:
            raise ModelError(f"LLM {model} could not be loaded by transformers: "
                             f"{str(exc).splitlines()[0]}") from None

    def render(self, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(list(messages), tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def next_token_logprobs(self, prompt: str) -> np.ndarray:
        import torch

        ids = torch.tensor([self.encode(prompt)], device=self._device)
        with torch.inference_mode():
            logits = self.model(input_ids=ids).logits[0, -1].float()
        return torch.log_softmax(logits, dim=-1).cpu().numpy()

    def stream(self, messages: Sequence[Message], options: GenerationOptions) -> Iterator[str]:
        import torch
        from transformers import TextIteratorStreamer

        ids = torch.tensor([self.encode(self.render(messages))], device=self._device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        sampling = {"do_sample": False} if options.temperature <= 0 else {
            "do_sample": True, "temperature": options.temperature, "top_k": 50}
        kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), streamer=streamer,
                      max_new_tokens=options.max_new_tokens,
                      repetition_penalty=options.repetition_penalty,
                      pad_token_id=self.tokenizer.eos_token_id, **sampling)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    self.model.generate(**kwargs)
            except BaseException as exc:  # surfaced in the caller's thread below
                errors.append(exc)
                streamer.end()

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        for piece in streamer:
            if piece:
                yield piece
        worker.join()
        if errors:
            raise errors[0]

    def score(self, prompt: str, continuations: Sequence[str]) -> list[float]:
        import torch

        prompt_ids = self.encode(prompt)
        seqs = [prompt_ids + self.encode(c) for c in continuations]
        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=self._device)
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs],
                            device=self._device)
        with torch.inference_mode():
            logits = self.model(input_ids=ids, attention_mask=mask).logits.float()
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
        target = ids[:, 1:]
        token_lp = logprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        scores = []
        for row, seq in enumerate(seqs):
            scores.append(float(token_lp[row, len(prompt_ids) - 1:len(seq) - 1].sum()))
        return scores
