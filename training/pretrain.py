"""Continued pre-training: the LLM reads the operator's own text (knowledge base,
reviewed transcripts) as plain next-token prediction.

Texts are joined with the end-of-text token and cut into equal blocks, so no
step is spent on padding. The result is a base for fine-tuning
(``voicedesk train finetune --base OUT/model/hf``), exported like any other
model but without the turn-format marker: it has not learned the task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from training.export import export_llm
from training.finetune import TrainingOutcome
from training.lm import LoraOptions, Sequence, collate, load_causal_lm, loss
from training.loop import LoopOptions
from training.runs import RunLog, train_logged
from voicedesk.errors import VoicedeskError


@dataclass
class PretrainOptions:
    method: str = "full"  # full | lora
    block_size: int = 256  # tokens per training sequence
    lora: LoraOptions = field(default_factory=LoraOptions)
    loop: LoopOptions = field(default_factory=lambda: LoopOptions(epochs=1, batch_size=4,
                                                                  learning_rate=0.0))
    export: bool = True


def blocks(texts: list[str], tokenizer: Any, block_size: int) -> list[Sequence]:
    """The corpus as consecutive ``block_size`` token blocks (a short tail is kept whole)."""
    stream: list[int] = []
    for text in texts:
        stream += tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    if block_size < 8:
        raise VoicedeskError(f"block size {block_size} is too small; use 64 tokens or more")
    out = [stream[i:i + block_size] for i in range(0, len(stream), block_size)]
    out = [b for b in out if len(b) >= 8]
    return [Sequence(b, list(b)) for b in out]


def pretrain(base_path: str, texts: list[str], out: Path, options: PretrainOptions,
             log: RunLog | None = None,
             on_step: Callable[[int, int, float], None] | None = None) -> TrainingOutcome:
    """Train into ``out`` (resuming a stopped run there) and export to ``out/model``."""
    if not options.loop.learning_rate:
        options.loop.learning_rate = 5e-5 if options.method == "full" else 3e-4
    model, tokenizer = load_causal_lm(base_path, options.method, options.lora,
                                      options.loop.seed)
    sequences = blocks(texts, tokenizer, options.block_size)
    if not sequences:
        raise VoicedeskError("the corpus is too short to make one training block")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    fingerprint = {"kind": "pretrain", "base": base_path, "method": options.method,
                   "lora": asdict(options.lora), "block_size": options.block_size,
                   "tokens": sum(len(s.ids) for s in sequences), "head": texts[0][:200]}
    result = train_logged(model, sequences, lambda batch: collate(batch, pad), loss, out,
                          options.loop, fingerprint, log, on_step)
    exported = None
    if options.export:
        exported = export_llm(model, tokenizer, out / "model", task_format=False, info={
            "run_id": log.id if log else "", "base": base_path, "method": options.method,
            "blocks": len(sequences), "steps": result.steps, "stage": "pretrain"})
    if log is not None:
        log.finish("completed", result.steps, {"final_loss": result.final_loss,
                                               "examples_per_s": result.examples_per_s})
    return TrainingOutcome(log.id if log else "", result, exported)
