"""The causal LM under training: loading (full or LoRA), batching, and the loss.

The loss projects to the vocabulary only the positions that carry a label.
With SmolLM2's 49k-token vocabulary the output projection is a large share
of each step; a fine-tuning example labels a handful of tokens after a
prompt several times longer, so skipping the rest makes a step much cheaper
without changing the loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from voicedesk.errors import ModelError

IGNORE = -100
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraOptions:
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.0


@dataclass(frozen=True)
class Sequence:
    ids: list[int]
    labels: list[int]  # IGNORE where no loss is taken


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_causal_lm(path: str, method: str, lora: LoraOptions | None = None,
                   seed: int = 0) -> tuple[Any, Any]:
    """Model and tokenizer from a transformers folder, prepared for ``method`` (lora|full).

    The LoRA matrices start random: seeding makes two runs of the same
    settings the same run, which is what lets a resumed run be checked.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    if method not in ("lora", "full"):
        raise ModelError(f"training method {method!r} is unknown; use lora or full")
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
    except (OSError, ValueError) as exc:
        raise ModelError(f"LLM {path} could not be loaded for training: "
                         f"{str(exc).splitlines()[0]}") from None
    model.to(device())
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(seed)
        lora = lora or LoraOptions()
        config = LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                            target_modules=list(LORA_TARGETS), task_type="CAUSAL_LM")
        model = get_peft_model(model, config)
    return model, tokenizer


def merged(model: Any) -> Any:
    """The plain transformers model, LoRA weights folded in (a no-op for full training)."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model


def collate(sequences: list[Sequence], pad_id: int) -> tuple[Any, Any, Any]:
    import torch

    width = max(len(s.ids) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    labels = torch.full((len(sequences), width), IGNORE, dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, :len(seq.ids)] = torch.tensor(seq.ids)
        mask[row, :len(seq.ids)] = 1
        labels[row, :len(seq.labels)] = torch.tensor(seq.labels)
    where = device()
    return ids.to(where), mask.to(where), labels.to(where)


def loss(model: Any, batch: tuple[Any, Any, Any]) -> Any:
    """Mean next-token cross-entropy over the labelled positions only."""
    import torch.nn.functional as F

    ids, mask, labels = batch
    hidden = model.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != IGNORE
    logits = model.get_output_embeddings()(hidden[:, :-1][keep])
    return F.cross_entropy(logits.float(), targets[keep])
