"""Moving one set of Whisper weights between CTranslate2, openai-whisper and transformers.

The bundled weights are CTranslate2 folders; openai-whisper (the reference
implementation) and transformers (what training/ fine-tunes) need their own
layouts. CTranslate2 stores the same tensors under other names, with the
attention projections fused (self-attention q|k|v, cross-attention k|v) and
a zero bias filled in for the key projection, which Whisper does not have.
Splitting them back is exact; dropping the key bias is exact too, since a key
bias adds the same amount to every attention score of a query and softmax
ignores it. The way back, transformers to CTranslate2, is CTranslate2's own
``TransformersConverter``.

openai-whisper's parameter names are the hub through which the other layouts
are mapped, because they are the original ones.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from asr.ct2_checkpoint import Ct2Checkpoint, read_model_bin
from voicedesk.errors import ModelError

MULTILINGUAL_VOCAB = 51865  # English-only Whisper vocabularies have 51864 tokens
DEFAULT_MAX_INITIAL_TIMESTAMP_INDEX = 50  # 1.0 s, openai-whisper's and faster-whisper's default
TOKENIZER_FILES = ("tokenizer.json", "preprocessor_config.json")


@dataclass(frozen=True)
class WhisperDims:
    """openai-whisper's ``ModelDimensions``, read off the tensor shapes."""

    n_mels: int
    n_vocab: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int

    @property
    def multilingual(self) -> bool:
        return self.n_vocab >= MULTILINGUAL_VOCAB


@dataclass(frozen=True)
class Ct2Whisper:
    """A CTranslate2 Whisper folder: weights, dimensions and decoding configuration."""

    folder: Path
    checkpoint: Ct2Checkpoint
    dims: WhisperDims
    config: dict[str, Any]  # config.json: alignment_heads, suppress_ids(_begin), lang_ids

    @property
    def alignment_heads(self) -> list[list[int]]:
        heads = self.config.get("alignment_heads")
        if heads:
            return [[int(layer), int(head)] for layer, head in heads]
        # Whisper's own default: every head of the second half of the decoder.
        return [[layer, head] for layer in range(self.dims.n_text_layer // 2,
                                                 self.dims.n_text_layer)
                for head in range(self.dims.n_text_head)]


def _count_layers(checkpoint: Ct2Checkpoint, side: str) -> int:
    pattern = re.compile(rf"{side}/layer_(\d+)/")
    return 1 + max((int(m.group(1)) for name in checkpoint.tensors
                    if (m := pattern.match(name))), default=-1)


def load_ct2_whisper(folder: str | Path) -> Ct2Whisper:
    """Read a CTranslate2 Whisper folder, or say why it is not one."""
    folder = Path(folder)
    checkpoint = read_model_bin(folder / "model.bin")
    if checkpoint.spec != "WhisperSpec":
        raise ModelError(f"{folder}/model.bin is a CTranslate2 {checkpoint.spec} model, not "
                         f"Whisper; point asr.model at a Whisper folder")
    try:
        config = json.loads((folder / "config.json").read_text())
    except FileNotFoundError:
        config = {}
    except ValueError as exc:
        raise ModelError(f"{folder}/config.json is not valid JSON ({exc}); reconvert the "
                         f"model") from None
    conv1 = checkpoint.raw("encoder/conv1/weight")
    embeddings = checkpoint.raw("decoder/embeddings/weight")
    dims = WhisperDims(
        n_mels=conv1.shape[1],
        n_vocab=embeddings.shape[0],
        n_audio_ctx=checkpoint.raw("encoder/position_encodings/encodings").shape[0],
        n_audio_state=conv1.shape[0],
        n_audio_head=checkpoint.scalar("encoder/num_heads"),
        n_audio_layer=_count_layers(checkpoint, "encoder"),
        n_text_ctx=checkpoint.raw("decoder/position_encodings/encodings").shape[0],
        n_text_state=embeddings.shape[1],
        n_text_head=checkpoint.scalar("decoder/num_heads"),
        n_text_layer=_count_layers(checkpoint, "decoder"),
    )
    return Ct2Whisper(folder, checkpoint, dims, config)


# ---- CTranslate2 -> openai-whisper names --------------------------------------------

def _linear(ct2: str, ours: str) -> list[tuple[str, str]]:
    return [(f"{ct2}/weight", f"{ours}.weight"), (f"{ct2}/bias", f"{ours}.bias")]


def _norm(ct2: str, ours: str) -> list[tuple[str, str]]:
    return [(f"{ct2}/gamma", f"{ours}.weight"), (f"{ct2}/beta", f"{ours}.bias")]


def _split(model: Ct2Whisper, ct2: str, outputs: list[str]) -> Iterator[tuple[str, np.ndarray]]:
    """Unfuse a CTranslate2 linear into equal row blocks; key projections lose their bias."""
    weights = np.split(model.checkpoint.float32(f"{ct2}/weight"), len(outputs))
    biases = np.split(model.checkpoint.float32(f"{ct2}/bias"), len(outputs))
    for name, weight, bias in zip(outputs, weights, biases, strict=True):
        yield f"{name}.weight", weight
        if not name.endswith(".key"):
            yield f"{name}.bias", bias


def _layer_pairs(ct2: str, ours: str, cross: bool) -> list[tuple[str, str]]:
    pairs = [*_linear(f"{ct2}/self_attention/linear_1", f"{ours}.attn.out"),
             *_norm(f"{ct2}/self_attention/layer_norm", f"{ours}.attn_ln"),
             *_linear(f"{ct2}/ffn/linear_0", f"{ours}.mlp.0"),
             *_linear(f"{ct2}/ffn/linear_1", f"{ours}.mlp.2"),
             *_norm(f"{ct2}/ffn/layer_norm", f"{ours}.mlp_ln")]
    if cross:
        pairs += [*_linear(f"{ct2}/attention/linear_0", f"{ours}.cross_attn.query"),
                  *_linear(f"{ct2}/attention/linear_2", f"{ours}.cross_attn.out"),
                  *_norm(f"{ct2}/attention/layer_norm", f"{ours}.cross_attn_ln")]
    return pairs


def openai_state_dict(model: Ct2Whisper) -> Iterator[tuple[str, np.ndarray]]:
    """Every openai-whisper parameter, as float32, in a stable order."""
    ckpt, dims = model.checkpoint, model.dims
    projection = "decoder/projection/weight"
    if ckpt.aliases.get(projection) != "decoder/embeddings/weight" and projection in ckpt \
            and not np.array_equal(ckpt.raw(projection), ckpt.raw("decoder/embeddings/weight")):
        raise ModelError(f"{model.folder}/model.bin has an output projection separate from the "
                         f"token embeddings; Whisper ties them, so this is not a Whisper model")
    pairs = [*_linear("encoder/conv1", "encoder.conv1"),
             *_linear("encoder/conv2", "encoder.conv2"),
             ("encoder/position_encodings/encodings", "encoder.positional_embedding"),
             *_norm("encoder/layer_norm", "encoder.ln_post"),
             ("decoder/embeddings/weight", "decoder.token_embedding.weight"),
             ("decoder/position_encodings/encodings", "decoder.positional_embedding"),
             *_norm("decoder/layer_norm", "decoder.ln")]
    for name, ours in pairs:
        yield ours, ckpt.float32(name)
    for side, layers, cross in (("encoder", dims.n_audio_layer, False),
                                ("decoder", dims.n_text_layer, True)):
        for i in range(layers):
            ct2, ours = f"{side}/layer_{i}", f"{side}.blocks.{i}"
            yield from _split(model, f"{ct2}/self_attention/linear_0",
                              [f"{ours}.attn.query", f"{ours}.attn.key", f"{ours}.attn.value"])
            if cross:
                yield from _split(model, f"{ct2}/attention/linear_1",
                                  [f"{ours}.cross_attn.key", f"{ours}.cross_attn.value"])
            for name, target in _layer_pairs(ct2, ours, cross):
                yield target, ckpt.float32(name)


# ---- openai-whisper -> transformers names ---------------------------------------------

_HF_RENAMES = (  # applied in order; the same table as transformers' convert_openai_to_hf
    (r"^encoder\.positional_embedding$", "model.encoder.embed_positions.weight"),
    (r"^decoder\.positional_embedding$", "model.decoder.embed_positions.weight"),
    (r"^decoder\.token_embedding\.", "model.decoder.embed_tokens."),
    (r"^encoder\.ln_post\.", "model.encoder.layer_norm."),
    (r"^decoder\.ln\.", "model.decoder.layer_norm."),
    (r"^(encoder|decoder)\.blocks\.", r"model.\1.layers."),
    (r"^encoder\.conv", "model.encoder.conv"),
    (r"\.cross_attn_ln\.", ".encoder_attn_layer_norm."),
    (r"\.attn_ln\.", ".self_attn_layer_norm."),
    (r"\.mlp_ln\.", ".final_layer_norm."),
    (r"\.mlp\.0\.", ".fc1."),
    (r"\.mlp\.2\.", ".fc2."),
    (r"\.cross_attn\.", ".encoder_attn."),
    (r"\.attn\.", ".self_attn."),
    (r"\.query\.", ".q_proj."),
    (r"\.key\.", ".k_proj."),
    (r"\.value\.", ".v_proj."),
    (r"\.out\.", ".out_proj."),
)


def hf_name(openai_name: str) -> str:
    for pattern, replacement in _HF_RENAMES:
        openai_name = re.sub(pattern, replacement, openai_name)
    return openai_name


# ---- writers ------------------------------------------------------------------------

def _progress(items: Iterator[tuple[str, np.ndarray]], total: int, what: str
              ) -> Iterator[tuple[str, np.ndarray]]:
    yield from tqdm(items, total=total, desc=what, unit="tensor", leave=False, disable=None)


def _tensor_count(dims: WhisperDims) -> int:
    return 11 + 15 * dims.n_audio_layer + 24 * dims.n_text_layer


def ct2_to_openai(ct2_folder: str | Path, target: str | Path) -> Path:
    """Write an openai-whisper checkpoint (``whisper.load_model(target)`` loads it).

    Weights keep float16 when the source is float16, as OpenAI's own checkpoints
    do; the alignment heads travel in an extra key, since ``load_model`` only
    knows them for its own named models.
    """
    import torch

    model = load_ct2_whisper(ct2_folder)
    keep_half = model.checkpoint.raw("encoder/conv1/weight").dtype == np.float16
    dtype = torch.float16 if keep_half else torch.float32
    state = {name: torch.from_numpy(np.ascontiguousarray(value)).to(dtype)
             for name, value in _progress(openai_state_dict(model), _tensor_count(model.dims),
                                          "to openai-whisper")}
    target = Path(target)
    torch.save({"dims": asdict(model.dims), "model_state_dict": state,
                "alignment_heads": model.alignment_heads}, target)
    return target


def _special_ids(tokenizer: Any) -> dict[str, int]:
    names = ("endoftext", "startoftranscript", "translate", "transcribe", "startoflm",
             "startofprev", "notimestamps")
    ids = {name: tokenizer.convert_tokens_to_ids(f"<|{name}|>") for name in names}
    missing = [name for name, value in ids.items() if value in (None, tokenizer.unk_token_id)
               and name != "endoftext"]
    if missing:
        raise ModelError(f"Whisper tokenizer lacks special tokens {missing}; the folder's "
                         f"tokenizer.json is not a Whisper tokenizer")
    return ids


def ct2_to_hf(ct2_folder: str | Path, target: str | Path) -> Path:
    """Write a transformers ``WhisperForConditionalGeneration`` folder (float32 safetensors).

    float32, because this folder is what training/ fine-tunes; widening float16
    is lossless, so converting back to float16 CTranslate2 restores every bit.
    """
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizer,
    )

    model = load_ct2_whisper(ct2_folder)
    dims, target = model.dims, Path(target)
    if not (model.folder / "tokenizer.json").is_file():
        raise ModelError(f"{model.folder} has no tokenizer.json; transformers needs it next to "
                         f"model.bin (copy it from the original Hugging Face model)")
    tokenizer = WhisperTokenizer(tokenizer_file=str(model.folder / "tokenizer.json"))
    ids = _special_ids(tokenizer)
    ffn = model.checkpoint.raw("encoder/layer_0/ffn/linear_0/weight").shape[0]
    config = WhisperConfig(
        vocab_size=dims.n_vocab, num_mel_bins=dims.n_mels, d_model=dims.n_audio_state,
        encoder_layers=dims.n_audio_layer, encoder_attention_heads=dims.n_audio_head,
        decoder_layers=dims.n_text_layer, decoder_attention_heads=dims.n_text_head,
        encoder_ffn_dim=ffn, decoder_ffn_dim=ffn,
        max_source_positions=dims.n_audio_ctx, max_target_positions=dims.n_text_ctx,
        bos_token_id=ids["startoftranscript"], decoder_start_token_id=ids["startoftranscript"],
        eos_token_id=ids["endoftext"], pad_token_id=ids["endoftext"],
        suppress_tokens=model.config.get("suppress_ids"),
        begin_suppress_tokens=model.config.get("suppress_ids_begin"),
        tie_word_embeddings=True, dtype="float32",
    )
    with torch.device("meta"):
        hf_model = WhisperForConditionalGeneration(config)
    state = {hf_name(name): torch.from_numpy(np.ascontiguousarray(value))
             for name, value in _progress(openai_state_dict(model), _tensor_count(dims),
                                          "to transformers")}
    state["proj_out.weight"] = state["model.decoder.embed_tokens.weight"]
    hf_model.load_state_dict(state, strict=True, assign=True)
    hf_model.tie_weights()
    hf_model.generation_config = _generation_config(GenerationConfig, model, ids, tokenizer)
    hf_model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    if (model.folder / "preprocessor_config.json").is_file():
        shutil.copy2(model.folder / "preprocessor_config.json", target)
    else:
        WhisperFeatureExtractor(feature_size=dims.n_mels).save_pretrained(target)
    return target


def _generation_config(cls: Any, model: Ct2Whisper, ids: dict[str, int], tokenizer: Any) -> Any:
    """What transformers needs to decode like the other backends (and to convert back)."""
    multilingual: dict[str, Any] = {}
    if model.dims.multilingual:  # on an English-only model these would trigger language detection
        lang_ids = [int(i) for i in model.config.get("lang_ids", [])]
        multilingual = {
            "lang_to_id": {tokenizer.convert_ids_to_tokens(i): i for i in lang_ids},
            "task_to_id": {"transcribe": ids["transcribe"], "translate": ids["translate"]},
        }
    return cls(
        decoder_start_token_id=ids["startoftranscript"], bos_token_id=ids["startoftranscript"],
        eos_token_id=ids["endoftext"], pad_token_id=ids["endoftext"],
        max_length=model.dims.n_text_ctx,
        suppress_tokens=model.config.get("suppress_ids", []),
        begin_suppress_tokens=model.config.get("suppress_ids_begin", []),
        alignment_heads=model.alignment_heads,
        no_timestamps_token_id=ids["notimestamps"], prev_sot_token_id=ids["startofprev"],
        max_initial_timestamp_index=DEFAULT_MAX_INITIAL_TIMESTAMP_INDEX,
        is_multilingual=model.dims.multilingual,
        return_timestamps=False,
        **multilingual,
    )


def hf_to_ct2(hf_folder: str | Path, target: str | Path, quantization: str = "float16") -> Path:
    """CTranslate2's own converter, keeping the tokenizer faster-whisper loads offline."""
    from ctranslate2.converters import TransformersConverter

    source = Path(hf_folder)
    copy = [name for name in TOKENIZER_FILES if (source / name).is_file()]
    try:
        TransformersConverter(str(source), copy_files=copy).convert(
            str(target), quantization=quantization, force=True)
    except (OSError, ValueError) as exc:
        raise ModelError(f"Whisper model {source} could not be converted to CTranslate2: "
                         f"{str(exc).splitlines()[0]}") from None
    return Path(target)
