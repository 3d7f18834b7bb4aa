"""A resumable training loop shared by pre-training, fine-tuning and Whisper fine-tuning.

A run is a fixed sequence of steps: the batch of step ``n`` depends only on
the seed and ``n`` (each epoch is a seeded permutation), so a run stopped at
step 120 and restarted from its checkpoint sees exactly the batches an
uninterrupted run would. A checkpoint holds the trainable tensors
(safetensors), the optimizer and schedule, the random state and the loss so
far; it is written beside its final name and renamed into place, so an
interrupted save never leaves a checkpoint that a restart would trust.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from voicedesk.errors import VoicedeskError

CHECKPOINTS = "checkpoints"
BUCKET_BATCHES = 64  # batches per length-sorted run (see ``batch_indices``)


class TrainingInterrupted(VoicedeskError):
    """The run stopped before its last step; its latest checkpoint resumes it."""

    def __init__(self, step: int, checkpoint: Path) -> None:
        super().__init__(f"training stopped at step {step}; checkpoint {checkpoint} is kept: "
                         f"run the same command again to resume from it")
        self.step = step
        self.checkpoint = checkpoint


@dataclass
class LoopOptions:
    epochs: float = 1.0
    max_steps: int = 0  # 0: as many as the epochs take
    batch_size: int = 8
    learning_rate: float = 2e-4
    weight_decay: float = 0.0
    warmup_fraction: float = 0.05
    max_grad_norm: float = 1.0
    seed: int = 0
    save_every: int = 50  # steps between checkpoints (and always at the end)
    keep_checkpoints: int = 1
    stop_after: int = 0  # stop (as if interrupted) once this step is reached; 0: never
    threads: int = 0  # torch threads; 0: all cores
    # bfloat16 autocast (None: where the hardware has it). Off by default: on a 2-core AMX
    # CPU it measured no faster than float32 for the 135M model (4.2 against 4.0 s a step).
    bf16: bool | None = False
    progress: bool = True


@dataclass
class LoopResult:
    steps: int
    resumed_from: int
    losses: list[float] = field(default_factory=list)  # mean loss per step, all steps so far
    seconds: float = 0.0  # this process's share
    examples_per_s: float = 0.0

    @property
    def final_loss(self) -> float:
        tail = self.losses[-max(1, len(self.losses) // 10):]
        return sum(tail) / len(tail) if tail else float("nan")


def total_steps(n_examples: int, options: LoopOptions) -> int:
    if options.max_steps:
        return options.max_steps
    per_epoch = math.ceil(n_examples / options.batch_size)
    return max(1, math.ceil(per_epoch * options.epochs))


def batch_indices(step: int, n_examples: int, options: LoopOptions,
                  lengths: Sequence[int] | None = None) -> list[int]:
    """Example indices of ``step``: a seeded permutation per epoch, cut into batches.

    With ``lengths``, each run of ``BUCKET_BATCHES`` batches of the permutation
    is sorted by length before it is cut, and the batches are then shuffled: a
    batch holds examples of similar length, so little of it is padding.
    """
    per_epoch = math.ceil(n_examples / options.batch_size)
    epoch, position = divmod(step, per_epoch)
    order = list(range(n_examples))
    shuffle = random.Random(options.seed * 1_000_003 + epoch).shuffle
    shuffle(order)
    size = options.batch_size
    if lengths is None:
        return order[position * size:(position + 1) * size]
    span = size * BUCKET_BATCHES
    order = [i for start in range(0, n_examples, span)
             for i in sorted(order[start:start + span], key=lambda i: lengths[i])]
    batches = [order[start:start + size] for start in range(0, n_examples, size)]
    shuffle(batches)
    return batches[position]


def native_bf16() -> bool:
    """Whether bfloat16 matrix products are fast here: a CUDA GPU that has them, or a CPU
    with AMX or AVX-512 BF16 (where they run several times faster than float32)."""
    import torch

    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def latest_checkpoint(run_dir: Path) -> Path | None:
    folder = run_dir / CHECKPOINTS
    found = sorted(folder.glob("step-*[0-9]")) if folder.is_dir() else []
    found = [p for p in found if (p / "state.json").is_file()]
    return found[-1] if found else None


def _param_groups(named: list[tuple[str, Any]], lr: float,
                  multipliers: dict[str, float] | None) -> list[dict[str, Any]]:
    groups: dict[float, list[Any]] = {}
    for name, param in named:
        factor = next((f for prefix, f in (multipliers or {}).items()
                       if name.startswith(prefix)), 1.0)
        groups.setdefault(factor, []).append(param)
    return [{"params": ps, "lr": lr * f} for f, ps in sorted(groups.items())]


def train(model: Any, examples: Sequence[Any], collate: Callable[[list[Any]], Any],
          loss_fn: Callable[[Any, Any], Any], run_dir: Path, options: LoopOptions,
          fingerprint: dict[str, Any] | None = None,
          on_step: Callable[[int, int, float], None] | None = None,
          lr_multipliers: dict[str, float] | None = None,
          lengths: Sequence[int] | None = None) -> LoopResult:
    """Train the parameters of ``model`` that require gradients, resuming if possible.

    ``lr_multipliers`` scales the learning rate of parameters whose name starts
    with a key (a new classification head learns faster than the encoder under it).
    ``lengths`` (one per example) batches examples of similar length together.

    ``fingerprint`` (the data and settings that define the run) is stored
    with each checkpoint; a checkpoint made for another fingerprint is
    refused rather than silently continued.
    """
    import torch
    from safetensors.torch import load_file, save_file
    from tqdm import tqdm

    torch.set_num_threads(options.threads or torch.get_num_threads())
    if not examples:
        raise VoicedeskError(f"no training examples for the run in {run_dir}")
    steps = total_steps(len(examples), options)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    optimizer = torch.optim.AdamW(_param_groups(named, options.learning_rate, lr_multipliers),
                                  lr=options.learning_rate, weight_decay=options.weight_decay)
    warmup = max(1, int(steps * options.warmup_fraction))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup))))
    fingerprint = {**(fingerprint or {}), "examples": len(examples), "steps": steps,
                   "options": {k: v for k, v in asdict(options).items()
                               if k not in ("stop_after", "progress", "save_every", "threads",
                                            "keep_checkpoints", "bf16")}}
    fingerprint = json.loads(json.dumps(fingerprint, default=str))

    start, losses = 0, []
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is not None:
        state = json.loads((checkpoint / "state.json").read_text())
        if state["fingerprint"] != fingerprint:
            raise VoicedeskError(
                f"{run_dir} holds a checkpoint of a different run (other data or settings); "
                f"resume with the same data and options, or pass a new output folder")
        tensors = load_file(str(checkpoint / "trainable.safetensors"))
        missing = [n for n, _ in named if n not in tensors]
        if missing:
            raise VoicedeskError(f"checkpoint {checkpoint} lacks {len(missing)} trained tensors "
                                 f"(e.g. {missing[0]}); delete it to start over")
        with torch.no_grad():
            for name, param in named:
                param.copy_(tensors[name])
        extra = torch.load(checkpoint / "optimizer.pt", weights_only=False)
        optimizer.load_state_dict(extra["optimizer"])
        schedule.load_state_dict(extra["schedule"])
        torch.set_rng_state(extra["torch_rng"])
        start, losses = int(state["step"]), list(state["losses"])

    def save(step: int) -> Path:
        final = run_dir / CHECKPOINTS / f"step-{step:07d}"
        scratch = final.with_name(f".{final.name}.partial")
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        save_file({n: p.detach().contiguous() for n, p in named},
                  str(scratch / "trainable.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                    "torch_rng": torch.get_rng_state()}, scratch / "optimizer.pt")
        (scratch / "state.json").write_text(json.dumps(
            {"step": step, "total_steps": steps, "losses": losses,
             "fingerprint": fingerprint}) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        scratch.rename(final)
        for old in sorted((run_dir / CHECKPOINTS).glob("step-*[0-9]"))[:-options.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    bf16 = native_bf16() if options.bf16 is None else options.bf16
    autocast = torch.autocast("cuda" if torch.cuda.is_available() else "cpu",
                              dtype=torch.bfloat16, enabled=bf16)
    model.train()
    result = LoopResult(steps=steps, resumed_from=start, losses=losses)
    began, seen = time.perf_counter(), 0
    bar = tqdm(total=steps, initial=start, unit="step", file=sys.stderr, dynamic_ncols=True,
               disable=not options.progress, desc=run_dir.name)
    step, updating = start, False
    try:
        while step < steps:
            batch = collate([examples[i]
                             for i in batch_indices(step, len(examples), options, lengths)])
            with autocast:
                loss = loss_fn(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if options.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, options.max_grad_norm)
            updating = True  # weights change from here: a stop now cannot be saved
            optimizer.step()
            schedule.step()
            step += 1
            losses.append(round(float(loss.detach()), 5))
            updating = False
            seen += min(options.batch_size, len(examples))
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if on_step is not None:
                on_step(step, steps, losses[-1])
            if step == steps or step % options.save_every == 0:
                save(step)
            if options.stop_after and step >= options.stop_after and step < steps:
                raise TrainingInterrupted(step, save(step))
    except KeyboardInterrupt:
        if step > start and not updating:
            raise TrainingInterrupted(step, save(step)) from None
        kept = latest_checkpoint(run_dir)
        if kept is not None:
            raise TrainingInterrupted(int(kept.name.split("-")[1]), kept) from None
        raise
    finally:
        bar.close()
        result.seconds = time.perf_counter() - began
        result.examples_per_s = seen / result.seconds if result.seconds else 0.0
    model.eval()
    result.steps = step
    return result
