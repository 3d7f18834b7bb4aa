"""Turn a model reference from the configuration into files an engine can load.

A reference is a bundled model name (``tiny.en``), a local directory, a
checkpoint file (``.gguf``) or a Hugging Face id. Serving formats are derived
once into the cache (``$VOICEDESK_HOME/models``): GGUF → Hugging Face
safetensors → CTranslate2 int8. Every derived folder is built beside its final
place and renamed into it only when complete, so an interrupted or failed
preparation never leaves a half-written model that a later run would load.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from voicedesk.errors import ModelError
from voicedesk.models.registry import ModelRegistry

COMPLETE = ".complete"


def say(message: str) -> None:
    print(f"voicedesk: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _lock(models_dir: Path) -> Iterator[None]:
    """One preparer at a time, across processes (tests, a server and a CLI may race)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    with (models_dir / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_complete(path: Path) -> bool:
    return (path / COMPLETE).is_file()


@contextlib.contextmanager
def building(final: Path) -> Iterator[Path]:
    """Yield a scratch folder that becomes ``final`` only if the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch = final.with_name(f".{final.name}.partial")
    shutil.rmtree(scratch, ignore_errors=True)  # left by an interrupted run
    scratch.mkdir()
    try:
        yield scratch
        (scratch / COMPLETE).write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
        shutil.rmtree(final, ignore_errors=True)
        scratch.rename(final)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def _slug(text: str) -> str:
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(text).name or text)[:40] + "-" + digest


def looks_like_hub_id(ref: str) -> bool:
    return bool(re.fullmatch(r"[\w.-]+/[\w.-]+", ref)) and not Path(ref).exists()


class ModelStore:
    """Resolves references for each role and prepares serving formats on demand."""

    def __init__(self, models_dir: Path, registry: ModelRegistry | None = None) -> None:
        self.models_dir = models_dir
        self.registry = registry or ModelRegistry(models_dir)

    # ---- ASR -------------------------------------------------------------------
    def whisper_ct2(self, ref: str) -> str:
        """A CTranslate2 Whisper folder, or a hub id faster-whisper can fetch."""
        bundled = self.registry.get(ref)
        if bundled is not None and bundled.role == "asr":
            files = self.registry.verified_files(bundled.name)
            if "model/model.bin" in files:  # shipped ready to load
                return str(files["model/model.bin"].parent)
            return str(self._assemble_parts(bundled.name, files))
        path = Path(ref).expanduser()
        if path.is_dir():
            if not (path / "model.bin").is_file():
                raise ModelError(
                    f"ASR model folder {path} has no model.bin; point asr.model at a "
                    f"CTranslate2 Whisper folder (ct2-transformers-converter output)"
                )
            return str(path)
        if looks_like_hub_id(ref):
            return ref
        raise ModelError(
            f"ASR model {ref!r} is neither a bundled model (tiny.en, base), a CTranslate2 "
            f"folder, nor a Hugging Face id"
        )

    def whisper_openai(self, ref: str) -> Path:
        """An openai-whisper checkpoint (.pt) holding the same weights as ``whisper_ct2(ref)``."""
        path = Path(ref).expanduser()
        if path.suffix == ".pt":
            if not path.is_file():
                raise ModelError(f"openai-whisper checkpoint {path} does not exist")
            return path
        source, final = self._ct2_derived(ref, "openai-whisper")

        def build(scratch: Path) -> None:
            from asr.convert import ct2_to_openai

            ct2_to_openai(source, scratch / "model.pt")

        what = f"{source}: converting CTranslate2 Whisper to openai-whisper"
        return self._prepare_once(final, what, build) / "model.pt"

    def whisper_hf(self, ref: str) -> str:
        """A transformers Whisper folder, or hub id, for the same weights as ``whisper_ct2(ref)``.

        A CTranslate2 model (bundled or a folder) is converted once into the
        cache; a transformers folder or a hub id is used as it is.
        """
        path = Path(ref).expanduser()
        is_ct2 = self.registry.get(ref) is not None or (path / "model.bin").is_file()
        if not is_ct2 and path.is_dir():
            if not (path / "config.json").is_file():
                raise ModelError(f"ASR model folder {path} has neither config.json nor model.bin; "
                                 f"expected a transformers or CTranslate2 Whisper folder")
            return str(path)
        if not is_ct2 and looks_like_hub_id(ref):
            return ref
        source, final = self._ct2_derived(ref, "hf")

        def build(scratch: Path) -> None:
            from asr.convert import ct2_to_hf

            ct2_to_hf(source, scratch)

        what = f"{source}: converting CTranslate2 Whisper to transformers"
        return str(self._prepare_once(final, what, build))

    def _ct2_derived(self, ref: str, kind: str) -> tuple[str, Path]:
        """The CTranslate2 folder behind ``ref`` and where a ``kind`` derived from it is cached.

        A local folder's cache entry is named after its path and its model.bin's
        size and time, so a retrained model in the same folder is converted anew.
        """
        bundled = self.registry.get(ref)
        if bundled is not None and bundled.role == "asr":
            return self.whisper_ct2(ref), self.models_dir / bundled.name / kind
        path = Path(ref).expanduser()
        if (path / "model.bin").is_file():
            stat = (path / "model.bin").stat()
            stamp = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:8]
            return str(path), self.models_dir / _slug(str(path.resolve())) / f"{kind}-{stamp}"
        raise ModelError(f"ASR model {ref!r} is neither a bundled model (tiny.en, base) nor a "
                         f"local CTranslate2 folder with model.bin; the {kind} backend converts "
                         f"from local weights only")

    def _assemble_parts(self, name: str, files: dict[str, Path]) -> Path:
        def build(scratch: Path) -> None:
            parts = sorted(p for k, p in files.items() if ".part" in k)
            with (scratch / "model.bin").open("wb") as out:
                for part in parts:
                    with part.open("rb") as src:
                        shutil.copyfileobj(src, out, 1 << 22)
            for key, path in files.items():
                if ".part" not in key:
                    shutil.copy2(path, scratch / Path(key).name)

        return self._prepare_once(self.models_dir / name / "ct2",
                                  f"{name}: joining model.bin parts", build)

    def derived(self, relative: str, what: str, build: Callable[[Path], None]) -> Path:
        """A model made from others (a classifier trained on the domain pack), built once
        into ``models_dir/relative`` by ``build(scratch)`` and reused after that."""
        return self._prepare_once(self.models_dir / relative, what, build)

    def _prepare_once(self, final: Path, what: str, build: Callable[[Path], None]) -> Path:
        """Build ``final`` once, under a lock, atomically; later calls just return it."""
        if is_complete(final):
            return final
        with _lock(self.models_dir):
            if not is_complete(final):
                say(f"preparing {what} into {final}")
                started = time.perf_counter()
                with building(final) as scratch:
                    build(scratch)
                say(f"prepared {final} in {time.perf_counter() - started:.0f} s")
        return final

    # ---- LLM -------------------------------------------------------------------
    def llm_hf(self, ref: str) -> str:
        """A Hugging Face model folder (safetensors) or hub id for transformers."""
        bundled = self.registry.get(ref)
        if bundled is not None and bundled.role == "llm":
            gguf = next(iter(self.registry.verified_files(bundled.name).values()))
            return str(self._gguf_to_hf(gguf, self.models_dir / bundled.name / "hf"))
        path = Path(ref).expanduser()
        if path.is_file() and path.suffix == ".gguf":
            return str(self._gguf_to_hf(path, self.models_dir / _slug(str(path.resolve())) / "hf"))
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise ModelError(f"LLM folder {path} has no config.json; expected a Hugging Face "
                                 f"model folder (save_pretrained output)")
            return str(path)
        if looks_like_hub_id(ref):
            return ref
        raise ModelError(f"LLM {ref!r} is neither a bundled model, a .gguf file, a model folder "
                         f"nor a Hugging Face id")

    def llm_ct2(self, ref: str, quantization: str = "int8") -> str:
        """A CTranslate2 generator folder for the same weights as ``llm_hf(ref)``."""
        path = Path(ref).expanduser()
        if path.is_dir() and (path / "model.bin").is_file():
            return str(path)  # already CTranslate2
        bundled = self.registry.get(ref)
        if bundled is not None:
            key = bundled.name
        else:
            key = _slug(str(path.resolve()) if path.exists() else ref)
        final = self.models_dir / key / f"ct2-{quantization}"
        if is_complete(final):
            return str(final)
        source = self.llm_hf(ref)

        def build(scratch: Path) -> None:
            from ctranslate2.converters import TransformersConverter

            TransformersConverter(source).convert(str(scratch), quantization=quantization,
                                                  force=True)
            _copy_tokenizer(source, scratch)

        return str(self._prepare_once(final, f"{key}: converting to CTranslate2 {quantization}",
                                      build))

    def _gguf_to_hf(self, gguf: Path, final: Path) -> Path:
        return self._prepare_once(
            final, f"{gguf.name}: de-quantising GGUF to safetensors (about 20 s)",
            lambda scratch: gguf_to_safetensors(gguf, scratch))

    # ---- TTS and embeddings ------------------------------------------------------
    def piper_voice(self, ref: str) -> Path:
        """The ONNX file of a Piper voice (its .onnx.json lies beside it)."""
        bundled = self.registry.get(ref)
        if bundled is not None and bundled.role == "tts":
            files = self.registry.verified_files(bundled.name)
            return next(p for k, p in files.items() if k.endswith(".onnx"))
        path = Path(ref).expanduser()
        if path.is_file() and path.suffix == ".onnx":
            if not path.with_suffix(".onnx.json").is_file():
                raise ModelError(f"Piper voice {path} has no {path.name}.json config beside it")
            return path
        raise ModelError(f"TTS voice {ref!r} is neither a bundled voice (en_US-joe-medium) nor a "
                         f"Piper .onnx file")

    def embeddings(self, ref: str) -> str:
        bundled = self.registry.get(ref)
        if bundled is not None and bundled.role == "embeddings":
            files = self.registry.verified_files(bundled.name)
            return str(files["model/model.safetensors"].parent)
        path = Path(ref).expanduser()
        if path.is_dir() or looks_like_hub_id(ref):
            return str(path) if path.is_dir() else ref
        raise ModelError(f"embedding model {ref!r} is neither bundled (all-minilm-l6-v2), a "
                         f"folder nor a Hugging Face id")


def gguf_to_safetensors(gguf: Path, out: Path) -> None:
    """De-quantise a GGUF checkpoint into a plain Hugging Face folder.

    transformers loads GGUF by de-quantising it, but refuses to save a model
    loaded that way; copying the state dict into a model built from the same
    config (without the quantization entry) gives a normal, reloadable folder.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.architectures = [type(loaded).__name__]
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _copy_tokenizer(source: str, target: Path) -> None:
    """Keep the tokenizer and chat template next to the CTranslate2 weights."""
    src = Path(source)
    if src.is_dir():
        for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                     "special_tokens_map.json", "generation_config.json",
                     "voicedesk_task.json"):  # nlu.turn_format's marker of a fine-tuned model
            if (src / name).is_file():
                shutil.copy2(src / name, target / name)
    else:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(source).save_pretrained(target)
