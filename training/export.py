"""Trained models into the formats that serve calls, and the check that a folder is one.

An exported model is one folder: ``hf/`` (merged safetensors, what the
transformers engines and further training load), ``ct2-int8/`` (an LLM for
the CTranslate2 engine) or ``ct2/`` (Whisper for faster-whisper), and
``voicedesk_model.json`` saying what it is. The folder is built beside its
final name and renamed into place when complete (``.complete``), as
prepared models are, so a crash mid-export never leaves a model that
verification or promotion would accept.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nlu import turn_format
from voicedesk.errors import ModelError
from voicedesk.models.prepare import COMPLETE, _copy_tokenizer, building

MANIFEST = "voicedesk_model.json"
LLM_FILES = {"hf": ("config.json", "model.safetensors", "tokenizer.json"),
             "ct2-int8": ("model.bin", "config.json", "tokenizer.json")}
ASR_FILES = {"hf": ("config.json", "model.safetensors", "preprocessor_config.json"),
             "ct2": ("model.bin", "config.json", "tokenizer.json", "preprocessor_config.json")}


class IncompleteModel(ModelError):
    pass


@dataclass(frozen=True)
class ExportedModel:
    root: Path
    kind: str  # llm | asr
    info: dict[str, Any]

    def serving_path(self, engine: str) -> Path:
        """The folder an engine loads: transformers reads ``hf/``, the others CTranslate2."""
        if engine == "transformers":
            return self.root / "hf"
        return self.root / ("ct2-int8" if self.kind == "llm" else "ct2")

    @property
    def task_format(self) -> str | None:
        return self.info.get("task_format")


def export_llm(model: Any, tokenizer: Any, out: Path, info: dict[str, Any],
               task_format: bool) -> ExportedModel:
    """Merged safetensors plus CTranslate2 int8; ``task_format`` marks a model trained on
    the zero-shot turn format so the recogniser asks it that way."""
    from ctranslate2.converters import TransformersConverter

    from training.lm import merged

    plain = merged(model).to("cpu")
    with building(out) as scratch:
        hf = scratch / "hf"
        plain.save_pretrained(hf)
        tokenizer.save_pretrained(hf)
        ct2 = scratch / "ct2-int8"
        TransformersConverter(str(hf)).convert(str(ct2), quantization="int8", force=True)
        _copy_tokenizer(str(hf), ct2)
        if task_format:
            for folder in (hf, ct2):
                turn_format.write_marker(folder, trained_by=info.get("run_id", ""))
        manifest = {"kind": "llm", "task_format": turn_format.FORMAT if task_format else None,
                    "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}
        (scratch / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return ExportedModel(out, "llm", manifest)


def export_whisper(model: Any, processor: Any, out: Path, info: dict[str, Any]) -> ExportedModel:
    """transformers folder plus the CTranslate2 folder faster-whisper loads."""
    from asr.convert import hf_to_ct2

    with building(out) as scratch:
        hf = scratch / "hf"
        model.to("cpu").save_pretrained(hf)
        processor.save_pretrained(hf)
        # transformers 5 writes processor_config.json; faster-whisper and the
        # transformers backend read the feature extractor's own file.
        processor.feature_extractor.save_pretrained(hf)
        hf_to_ct2(hf, scratch / "ct2", quantization="int8")
        manifest = {"kind": "asr", "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}
        (scratch / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return ExportedModel(out, "asr", manifest)


def open_exported(path: str | Path) -> ExportedModel:
    """The exported model at ``path``, checked file by file before anything loads it.

    An incomplete folder (an export that crashed, a copy that stopped half
    way, a hand-made folder missing weights) is refused with the list of
    what is missing.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise IncompleteModel(f"candidate model {root} is not a folder; pass the output folder "
                              f"of `voicedesk train` (it holds {MANIFEST})")
    manifest_path = root / MANIFEST
    try:
        info = json.loads(manifest_path.read_text())
    except OSError:
        raise IncompleteModel(f"candidate model {root} has no {MANIFEST}; it was not written by "
                              f"`voicedesk train` or its export did not finish: train or export "
                              f"it again") from None
    except ValueError as exc:
        raise IncompleteModel(f"{manifest_path} is not valid JSON ({exc}); export again") from None
    kind = info.get("kind")
    if kind not in ("llm", "asr"):
        raise IncompleteModel(f"{manifest_path} names kind {kind!r}; expected llm or asr")
    needed = LLM_FILES if kind == "llm" else ASR_FILES
    missing = [f"{folder}/{name}" for folder, names in needed.items() for name in names
               if not (root / folder / name).is_file() or (root / folder / name).stat().st_size
               == 0]
    if not (root / COMPLETE).is_file():
        missing.append(COMPLETE)
    if missing:
        raise IncompleteModel(f"candidate model {root} is incomplete: missing or empty "
                              f"{', '.join(missing)}; export it again (rerun the `voicedesk "
                              f"train` command, which resumes and re-exports)")
    return ExportedModel(root, kind, info)
