"""Supervised fine-tuning of the LLM on the turn task, LoRA or full.

Each example becomes the zero-shot turn prompt (``nlu.turn_format``) and
its target: the intent first, then the slots and, optionally, the reply.
The loss is on the target only. The tokens are the prompt's and the
target's encoded separately, exactly as ``choose`` encodes them when the
recogniser asks, so the model learns the very first token it is scored on.
TRL's SFT trainer is not used: its packing and chat templating would have to
be undone to keep that property, and the loop in ``training.loop`` already
resumes step-exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nlu import turn_format
from training.export import ExportedModel, export_llm
from training.lm import LoraOptions, Sequence, collate, load_causal_lm, loss
from training.loop import LoopOptions, LoopResult
from training.runs import RunLog, train_logged
from training.task_examples import TurnExample, balanced, spoken_variants

DEFAULT_LR = {"lora": 1e-3, "full": 5e-5}


@dataclass
class FinetuneOptions:
    method: str = "lora"  # lora | full
    max_length: int = 96  # tokens; longer examples keep the end of the prompt
    with_slots: bool = True
    with_reply: bool = False  # replies make examples several times longer
    spoken_variants: bool = True  # add lower-case, unpunctuated, "um ..." copies
    balance: bool = True  # repeat rarer intents up to the commonest one's count
    lora: LoraOptions = field(default_factory=LoraOptions)
    loop: LoopOptions = field(default_factory=lambda: LoopOptions(epochs=3, batch_size=16,
                                                                  learning_rate=0.0))
    export: bool = True


@dataclass
class TrainingOutcome:
    run_id: str
    loop: LoopResult
    model: ExportedModel | None


def sft_sequences(examples: list[TurnExample], tokenizer: Any, options: FinetuneOptions
                  ) -> list[Sequence]:
    out = []
    eos = tokenizer.eos_token_id
    for example in examples:
        prompt = turn_format.prompt(example.text, example.context)
        target = turn_format.target(example.intent, example.slots if options.with_slots else None,
                                    example.reply if options.with_reply else None)
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        t = tokenizer(target, add_special_tokens=False)["input_ids"] + [eos]
        t = t[:options.max_length // 2]
        p = p[-(options.max_length - len(t)):]
        out.append(Sequence(p + t, [-100] * len(p) + t))
    return out


def expand(examples: list[TurnExample], options: FinetuneOptions) -> list[TurnExample]:
    """The training examples as the loop sees them: spoken variants, then balanced."""
    if options.spoken_variants:
        examples = [v for e in examples for v in spoken_variants(e)]
    return balanced(examples) if options.balance else examples


def finetune(base_path: str, examples: list[TurnExample], out: Path, options: FinetuneOptions,
             log: RunLog | None = None,
             on_step: Callable[[int, int, float], None] | None = None) -> TrainingOutcome:
    """Train into ``out`` (resuming a stopped run there) and export to ``out/model``."""
    if not options.loop.learning_rate:
        options.loop.learning_rate = DEFAULT_LR.get(options.method, 1e-4)
    model, tokenizer = load_causal_lm(base_path, options.method, options.lora,
                                      options.loop.seed)
    data = expand(examples, options)
    sequences = sft_sequences(data, tokenizer, options)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    fingerprint = {"kind": "finetune", "base": base_path, "method": options.method,
                   "lora": asdict(options.lora), "format": turn_format.FORMAT,
                   "data": [(e.text, e.intent, e.context) for e in examples[:50]],
                   "n": len(examples), "with_slots": options.with_slots,
                   "with_reply": options.with_reply, "variants": options.spoken_variants,
                   "balance": options.balance}
    result = train_logged(model, sequences, lambda batch: collate(batch, pad), loss, out,
                          options.loop, fingerprint, log, on_step)
    exported = None
    if options.export:
        exported = export_llm(model, tokenizer, out / "model", task_format=True, info={
            "run_id": log.id if log else "", "base": base_path, "method": options.method,
            "examples": len(examples), "steps": result.steps})
    if log is not None:
        log.finish("completed", result.steps, {"final_loss": result.final_loss,
                                               "examples_per_s": result.examples_per_s})
    return TrainingOutcome(log.id if log else "", result, exported)
