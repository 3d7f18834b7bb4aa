"""Reading a CTranslate2 ``model.bin`` without CTranslate2.

The bundled Whisper weights ship only as CTranslate2 folders. Running them in
openai-whisper or Hugging Face transformers needs the raw tensors, and the
file layout is simple and documented (CTranslate2's ``ModelSpec._serialize``):

    uint32 binary version, string spec name, uint32 spec revision,
    uint32 count, then per tensor: string name, uint8 rank, uint32 dims[rank],
    uint8 dtype id, uint32 byte count, raw bytes (little endian),
    uint32 alias count, then per alias: string alias, string target.

Strings are a uint16 length (including a trailing NUL) and UTF-8 bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voicedesk.errors import ModelError

# Order of CTranslate2's DataType enum (include/ctranslate2/types.h). bfloat16 has
# no numpy type: it is read as uint16 and widened in ``Ct2Checkpoint.float32``.
_DTYPES = ("float32", "int8", "int16", "int32", "float16", "uint16")
_FIRST_TYPED_VERSION = 4  # earlier files stored float32 only and no dtype byte


@dataclass(frozen=True)
class Ct2Checkpoint:
    """The named tensors of one ``model.bin``; aliases name shared tensors."""

    path: Path
    spec: str
    revision: int
    tensors: dict[str, np.ndarray]
    aliases: dict[str, str]
    bfloat16: frozenset[str] = frozenset()

    def __contains__(self, name: str) -> bool:
        return name in self.tensors or name in self.aliases

    def raw(self, name: str) -> np.ndarray:
        """The tensor as stored (quantised weights stay integers)."""
        target = self.aliases.get(name, name)
        if target not in self.tensors:
            raise ModelError(f"{self.path} ({self.spec}) has no tensor {name}; the file is not "
                             f"a complete CTranslate2 Whisper model: reconvert it")
        return self.tensors[target]

    def float32(self, name: str) -> np.ndarray:
        """The tensor as float32, de-quantising int8/int16 weights with their row scales.

        De-quantisation is exact for float16/float32 files and an approximation
        for quantised ones, which is why converters prefer float16 sources.
        """
        target = self.aliases.get(name, name)
        value = self.raw(name)
        if target in self.bfloat16:
            return (value.astype(np.uint32) << 16).view(np.float32)
        if value.dtype in (np.int8, np.int16) and f"{target}_scale" in self.tensors:
            scale = self.tensors[f"{target}_scale"].astype(np.float32)
            return value.astype(np.float32) / scale.reshape(-1, *([1] * (value.ndim - 1)))
        return value.astype(np.float32)

    def scalar(self, name: str) -> int:
        return int(self.raw(name).reshape(-1)[0])


class _Reader:
    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.pos, self.path = data, 0, path

    def take(self, fmt: str) -> int:
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.data):
            raise ModelError(f"{self.path} is truncated at byte {self.pos}; re-install or "
                             f"reconvert the model")
        (value,) = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return int(value)

    def string(self) -> str:
        length = self.take("H")
        raw = self.data[self.pos:self.pos + length]
        self.pos += length
        return raw.rstrip(b"\0").decode("utf-8")

    def array(self, shape: tuple[int, ...], dtype: str, nbytes: int) -> np.ndarray:
        if self.pos + nbytes > len(self.data):
            raise ModelError(f"{self.path} is truncated at byte {self.pos}; re-install or "
                             f"reconvert the model")
        value = np.frombuffer(self.data, dtype=np.dtype(dtype).newbyteorder("<"),
                              count=nbytes // np.dtype(dtype).itemsize, offset=self.pos)
        self.pos += nbytes
        return value.reshape(shape)


def read_model_bin(path: str | Path) -> Ct2Checkpoint:
    """Parse a CTranslate2 ``model.bin``; the arrays are read-only views of the file."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path} does not exist; expected a CTranslate2 model.bin")
    reader = _Reader(path.read_bytes(), path)
    version = reader.take("I")
    if not _FIRST_TYPED_VERSION <= version <= 6:
        raise ModelError(f"{path} has CTranslate2 binary version {version}; only 4-6 can be "
                         f"read: reconvert it with a current ct2-transformers-converter")
    spec = reader.string()
    revision = reader.take("I")
    tensors: dict[str, np.ndarray] = {}
    bfloat16: set[str] = set()
    for _ in range(reader.take("I")):
        name = reader.string()
        shape = tuple(reader.take("I") for _ in range(reader.take("B")))
        type_id = reader.take("B")
        if type_id >= len(_DTYPES):
            raise ModelError(f"{path}: tensor {name} has unknown dtype id {type_id}")
        if _DTYPES[type_id] == "uint16":
            bfloat16.add(name)
        tensors[name] = reader.array(shape, _DTYPES[type_id], reader.take("I"))
    aliases = {reader.string(): reader.string() for _ in range(reader.take("I"))}
    return Ct2Checkpoint(path, spec, revision, tensors, aliases, frozenset(bfloat16))
