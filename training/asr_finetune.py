"""Whisper fine-tuning with transformers on reviewed call audio and corrected transcripts.

The weights start from the served model (CTranslate2 converted to
transformers once, ``ModelStore.whisper_hf``) and end as both a transformers
folder and the CTranslate2 folder faster-whisper serves.

By default only the encoder learns: it adapts to the line and the voices
while the decoder, Whisper's language model, keeps its spelling and its
habits with compounds. Measured side by side (benchmarks/asr_finetune.py,
179 in-domain clips, 3 epochs): encoder only, in-domain WER -70 % and the
general set +0.95 points; decoder only, -56 % and +1.42 points ("cold
hearted" became "coldhearted"). The decoder alone costs a third of the step
time; ``train="decoder"`` or ``"all"`` choose it, or both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.finetune import TrainingOutcome
from training.loop import LoopOptions
from training.runs import RunLog, train_logged
from training.task_examples import AudioExample
from voicedesk.errors import ModelError

MAX_SECONDS = 30  # one Whisper window; longer clips are a data error


PARTS = ("encoder", "decoder", "all")  # what learns in a run


@dataclass
class AsrFinetuneOptions:
    train: str = "encoder"  # one of PARTS (see the module docstring)
    loop: LoopOptions = field(default_factory=lambda: LoopOptions(epochs=3, batch_size=4,
                                                                  learning_rate=1e-5))
    export: bool = True


@dataclass(frozen=True)
class Clip:
    features: Any  # (n_mels, 3000) float tensor
    labels: list[int]


def load_whisper(path: str) -> tuple[Any, Any]:
    from transformers import WhisperForConditionalGeneration, WhisperProcessor
    from transformers.utils import logging as hf_logging

    from training.lm import device

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        processor = WhisperProcessor.from_pretrained(path)
        model = WhisperForConditionalGeneration.from_pretrained(path, dtype="float32")
    except (OSError, ValueError) as exc:
        raise ModelError(f"Whisper model {path} could not be loaded for training: "
                         f"{str(exc).splitlines()[0]}") from None
    return model.to(device()), processor


def clips(examples: list[AudioExample], processor: Any) -> list[Clip]:
    """Log-mel features and decoder targets; the start-of-transcript token is the
    decoder's own start, so it is not a label."""
    from asr.audio import load_audio

    out = []
    start = processor.tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
    for example in examples:
        audio = load_audio(example.audio)
        if audio.duration > MAX_SECONDS:
            raise ModelError(f"clip {example.audio} lasts {audio.duration:.0f} s; Whisper "
                             f"fine-tuning takes clips of up to {MAX_SECONDS} s: cut it by turn")
        features = processor.feature_extractor(audio.samples, sampling_rate=16_000,
                                               return_tensors="pt").input_features[0]
        ids = processor.tokenizer(" " + " ".join(example.text.split())).input_ids
        if ids and ids[0] == start:
            ids = ids[1:]
        out.append(Clip(features, ids))
    return out


def collate(batch: list[Clip], pad: int = -100) -> tuple[Any, Any]:
    import torch

    from training.lm import device

    width = max(len(c.labels) for c in batch)
    labels = torch.full((len(batch), width), pad, dtype=torch.long)
    for row, clip in enumerate(batch):
        labels[row, :len(clip.labels)] = torch.tensor(clip.labels)
    features = torch.stack([c.features for c in batch])
    return features.to(device()), labels.to(device())


def loss(model: Any, batch: tuple[Any, Any]) -> Any:
    features, labels = batch
    return model(input_features=features, labels=labels).loss


def freeze(model: Any, train: str) -> None:
    """Only the part ``train`` names learns; the decoder's output layer is its own
    token embeddings (tied), so it moves with the decoder."""
    frozen = {"encoder": [model.get_decoder()], "decoder": [model.get_encoder()],
              "all": []}[train]
    for part in frozen:
        for param in part.parameters():
            param.requires_grad = False


def finetune_whisper(base_path: str, examples: list[AudioExample], out: Path,
                     options: AsrFinetuneOptions, log: RunLog | None = None,
                     on_step: Callable[[int, int, float], None] | None = None
                     ) -> TrainingOutcome:
    """Train into ``out`` (resuming a stopped run there) and export to ``out/model``."""
    from training.export import export_whisper

    if options.train not in PARTS:
        raise ModelError(f"Whisper fine-tuning cannot train {options.train!r}: expected one "
                         f"of {', '.join(PARTS)}")
    model, processor = load_whisper(base_path)
    freeze(model, options.train)
    data = clips(examples, processor)
    fingerprint = {"kind": "asr", "base": base_path, "train": options.train,
                   "clips": [(str(e.audio.name), e.text) for e in examples[:50]],
                   "n": len(examples)}
    result = train_logged(model, data, collate, loss, out, options.loop, fingerprint, log,
                          on_step)
    exported = None
    if options.export:
        exported = export_whisper(model, processor, out / "model", info={
            "run_id": log.id if log else "", "base": base_path, "clips": len(examples),
            "steps": result.steps, "train": options.train})
    if log is not None:
        log.finish("completed", result.steps, {"final_loss": result.final_loss})
    return TrainingOutcome(log.id if log else "", result, exported)
