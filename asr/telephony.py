"""Telephone audio: G.711 codecs, narrowband upsampling, and two-channel call recordings.

Phone networks carry 8 kHz G.711 (mu-law in North America and Japan, A-law
elsewhere); Whisper wants 16 kHz linear PCM. The codecs here are vectorised
numpy, bit-exact with the ITU-T G.711 tables and with the standard library's
``audioop`` (deprecated, gone in Python 3.13), so gateways and recordings do
not depend on it.

Call-centre recorders usually keep the caller and the agent on separate
channels of one stereo file. ``CallRecording`` reads such a file in blocks
(a one-hour call never sits in memory whole), resamples each channel to
16 kHz as it streams, and names channel 0 ``caller`` and channel 1 ``agent``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import soxr

from asr.audio import MAX_RATE, MIN_RATE, SPEECH_RATE, resample
from voicedesk.errors import AudioError

Law = Literal["ulaw", "alaw"]

NARROWBAND_RATE = 8_000
# Channel 0 is the caller (left), channel 1 the agent (right): the layout of the
# recorders we meet and of voicedesk's own conversation.wav (caller left).
STEREO_SPEAKERS = ("caller", "agent")
MONO_SPEAKER = "caller"
# Headerless G.711 files (sox's .ul/.al, RTP payload dumps): 8 kHz mono by convention.
RAW_G711_SUFFIXES: dict[str, Law] = {
    ".ul": "ulaw", ".ulaw": "ulaw", ".mulaw": "ulaw", ".pcmu": "ulaw", ".u8": "ulaw",
    ".al": "alaw", ".alaw": "alaw", ".pcma": "alaw", ".a8": "alaw",
}

_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159  # largest magnitude on the 14-bit scale the encoder works on
_ULAW_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
_ALAW_SEG_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)


def _ulaw_table() -> np.ndarray:
    """The 256 decoded values of G.711 mu-law (ITU-T G.711 table 2, 16-bit scale)."""
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + _ULAW_BIAS) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _ULAW_BIAS - t, t - _ULAW_BIAS).astype(np.int16)


def _alaw_table() -> np.ndarray:
    """The 256 decoded values of G.711 A-law (ITU-T G.711 table 1, 16-bit scale)."""
    a = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (a & 0x70) >> 4
    t = ((a & 0x0F) << 4) + np.where(seg == 0, 8, 0x108)
    t = np.where(seg > 1, t << np.maximum(seg - 1, 0), t)
    return np.where(a & 0x80, t, -t).astype(np.int16)


ULAW_TO_LINEAR = _ulaw_table()
ALAW_TO_LINEAR = _alaw_table()


def _as_codes(data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ValueError(f"G.711 codes must be uint8 bytes, got an array of {data.dtype}")
        return data
    return np.frombuffer(data, dtype=np.uint8)


def _as_pcm16(pcm: np.ndarray | bytes | bytearray | memoryview) -> np.ndarray:
    if isinstance(pcm, np.ndarray):
        if pcm.dtype != np.int16:
            raise ValueError(f"G.711 encodes 16-bit PCM, got an array of {pcm.dtype}; "
                             f"convert floats with asr.audio.to_int16 first")
        return pcm
    return np.frombuffer(pcm, dtype="<i2")


def ulaw_decode(data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """mu-law bytes to 16-bit linear PCM (int16), one sample per byte."""
    return ULAW_TO_LINEAR[_as_codes(data)]


def alaw_decode(data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """A-law bytes to 16-bit linear PCM (int16), one sample per byte."""
    return ALAW_TO_LINEAR[_as_codes(data)]


def ulaw_encode(pcm: np.ndarray | bytes | bytearray | memoryview) -> np.ndarray:
    """16-bit PCM (int16 array or little-endian bytes) to mu-law codes (uint8).

    The classic Sun/CCITT reference encoder that ``audioop.lin2ulaw`` uses: the
    sample is taken on a 14-bit scale, biased, and its segment and four
    mantissa bits are complemented, so silence encodes as 0xFF.
    """
    x = _as_pcm16(pcm).astype(np.int32) >> 2
    mask = np.where(x < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(x), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg = np.searchsorted(_ULAW_SEG_END, magnitude, side="left")
    code = np.where(seg >= 8, 0x7F,
                    (np.minimum(seg, 7) << 4) | ((magnitude >> np.minimum(seg + 1, 8)) & 0x0F))
    return (code ^ mask).astype(np.uint8)


def alaw_encode(pcm: np.ndarray | bytes | bytearray | memoryview) -> np.ndarray:
    """16-bit PCM (int16 array or little-endian bytes) to A-law codes (uint8).

    The reference encoder of ``audioop.lin2alaw``: 13-bit scale, one's
    complement for negatives, even bits inverted (XOR 0x55) on the wire.
    """
    x = _as_pcm16(pcm).astype(np.int32) >> 3
    mask = np.where(x >= 0, 0xD5, 0x55)
    magnitude = np.where(x >= 0, x, -x - 1)
    seg = np.searchsorted(_ALAW_SEG_END, magnitude, side="left")
    mantissa = np.where(seg < 2, magnitude >> 1, magnitude >> np.maximum(seg, 1)) & 0x0F
    code = np.where(seg >= 8, 0x7F, (np.minimum(seg, 7) << 4) | mantissa)
    return (code ^ mask).astype(np.uint8)


def g711_decode(data: bytes | bytearray | memoryview | np.ndarray, law: Law) -> np.ndarray:
    """G.711 bytes to float32 samples in [-1, 1), the format every speech stage uses."""
    pcm = ulaw_decode(data) if law == "ulaw" else alaw_decode(data)
    return pcm.astype(np.float32) / 32768.0


def g711_encode(samples: np.ndarray, law: Law) -> bytes:
    """Float samples in [-1, 1] to G.711 bytes, ready for an RTP payload or a .ul file."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype(np.int16)
    return (ulaw_encode(pcm) if law == "ulaw" else alaw_encode(pcm)).tobytes()


def narrowband_to_speech(samples: np.ndarray, rate: int = NARROWBAND_RATE) -> np.ndarray:
    """Telephone-band audio up to Whisper's 16 kHz, band-limited (soxr VHQ).

    Upsampling adds no speech above 4 kHz; what matters is that it adds no
    aliasing or imaging either, which a naive sample-repeat would.
    """
    return resample(samples, rate, SPEECH_RATE)


def speaker_labels(channels: int) -> tuple[str, ...]:
    """Who is on each channel of a call recording (see ``STEREO_SPEAKERS``)."""
    if channels == 1:
        return (MONO_SPEAKER,)
    if channels == 2:
        return STEREO_SPEAKERS
    raise ValueError(f"a call recording has 1 or 2 channels, not {channels}")


@dataclass(frozen=True)
class RecordingInfo:
    path: str
    sample_rate: int
    channels: int
    frames: int
    format: str

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _wav_declared_frames(path: Path, subtype: str, channels: int) -> int | None:
    """Frames a WAV's ``data`` chunk header promises, or None if it makes no promise.

    libsndfile quietly reports what is left of a cut-off WAV, so an interrupted
    copy would look like a short call. Recorders that stream to disk write a
    placeholder size (0 or 0xFFFFFFFF) until they close the file; those are
    not a promise and are not checked.
    """
    bytes_per_sample = {"PCM_U8": 1, "PCM_S8": 1, "ULAW": 1, "ALAW": 1, "PCM_16": 2,
                        "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8}.get(subtype)
    if bytes_per_sample is None:
        return None
    with path.open("rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        while header := handle.read(8):
            if len(header) < 8:
                return None
            size = int.from_bytes(header[4:], "little")
            if header[:4] == b"data":
                if size in (0, 0xFFFFFFFF):
                    return None
                return size // (bytes_per_sample * channels)
            handle.seek(size + (size & 1), 1)
    return None


class CallRecording:
    """A recorded call read block by block, each channel at 16 kHz.

    Opening checks what can be checked without decoding (exists, non-empty,
    a format libsndfile or the raw G.711 reader knows, a usable rate and
    channel count) so a bad file fails fast with a one-line reason.
    """

    BLOCK_SECONDS = 10.0

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.law = RAW_G711_SUFFIXES.get(self.path.suffix.lower())
        self.info = self._probe()

    def _probe(self) -> RecordingInfo:
        path = self.path
        if not path.exists():
            raise AudioError(f"audio file {path} does not exist")
        if path.is_dir():
            raise AudioError(f"{path} is a folder; expected an audio file")
        size = path.stat().st_size
        if size == 0:
            raise AudioError(f"audio file {path} is empty (0 bytes); re-export or re-copy it")
        if self.law is not None:
            return RecordingInfo(str(path), NARROWBAND_RATE, 1, size, f"raw G.711 {self.law}")
        try:
            info = sf.info(str(path))
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
            reason = str(exc).split(":")[-1].strip() or type(exc).__name__
            raise AudioError(f"{path} is not a readable audio file ({reason}); expected WAV, "
                             f"FLAC, OGG, MP3 or raw G.711 (.ul/.al)") from None
        if info.frames <= 0:
            raise AudioError(f"audio file {path} contains no audio (0 samples)")
        if not MIN_RATE <= info.samplerate <= MAX_RATE:
            raise AudioError(f"audio file {path} is sampled at {info.samplerate} Hz; voicedesk "
                             f"needs {MIN_RATE}-{MAX_RATE} Hz: resample it "
                             f"(sox in.wav -r 16000 out.wav)")
        declared = (_wav_declared_frames(path, info.subtype, info.channels)
                    if info.format in ("WAV", "WAVEX") else None)
        if declared is not None and info.frames < declared:
            raise AudioError(f"audio file {path} is truncated: its header declares {declared} "
                             f"frames, the file holds {info.frames}; copy it again from the "
                             f"recorder")
        if info.channels not in (1, 2):
            raise AudioError(f"audio file {path} has {info.channels} channels; a call recording "
                             f"is mono or stereo (caller left, agent right): extract the two "
                             f"parties' channels first (sox in.wav out.wav remix 1 2)")
        return RecordingInfo(str(path), info.samplerate, info.channels, info.frames,
                             f"{info.format} {info.subtype}")

    def native_blocks(self) -> Iterator[np.ndarray]:
        """float32 blocks of shape (frames, channels) at the file's own rate."""
        block = max(1, int(self.BLOCK_SECONDS * self.info.sample_rate))
        read = 0
        try:
            if self.law is not None:
                with self.path.open("rb") as handle:
                    while chunk := handle.read(block):
                        read += len(chunk)
                        yield g711_decode(chunk, self.law)[:, None]
            else:
                with sf.SoundFile(str(self.path)) as handle:
                    for data in handle.blocks(blocksize=block, dtype="float32", always_2d=True):
                        if not np.isfinite(data).all():
                            at = read / handle.samplerate
                            raise AudioError(f"audio file {self.path} contains invalid samples "
                                             f"(NaN or infinity) near {at:.1f} s; re-export it")
                        read += len(data)
                        yield data
        except sf.LibsndfileError as exc:
            raise AudioError(f"audio file {self.path} could not be decoded after "
                             f"{read / self.info.sample_rate:.1f} s ({exc.error_string}); "
                             f"it is probably truncated or corrupt") from None
        if read == 0:
            raise AudioError(f"audio file {self.path} contains no audio (0 samples)")
        if read < 0.9 * self.info.frames:
            raise AudioError(f"audio file {self.path} is truncated: header says "
                             f"{self.info.frames} frames, only {read} could be read")

    def speech_blocks(self) -> Iterator[np.ndarray]:
        """Blocks of shape (frames, channels) at 16 kHz, resampled as they stream.

        One streaming resampler per file keeps block edges seamless, with the
        same soxr VHQ quality as ``asr.audio.resample``.
        """
        rate = self.info.sample_rate
        if rate == SPEECH_RATE:
            yield from self.native_blocks()
            return
        stream = soxr.ResampleStream(rate, SPEECH_RATE, self.info.channels, dtype="float32",
                                     quality="VHQ")
        for data in self.native_blocks():
            out = stream.resample_chunk(np.ascontiguousarray(data))
            if len(out):
                yield out
        tail = stream.resample_chunk(np.zeros((0, self.info.channels), np.float32), last=True)
        if len(tail):
            yield tail

    def channels_identical(self, tolerance: float = 1e-3) -> bool:
        """Whether a stereo file is really mono saved twice (both sides the same signal).

        Such a file has one speaker, not a caller and an agent; transcribing
        both sides would print every sentence twice. Decided on the first
        stretch that is not silent, so a real call is recognised in seconds.
        """
        if self.info.channels != 2:
            return False
        signal = difference = 0.0
        for data in self.native_blocks():
            signal += float(np.square(data).sum())
            difference += float(np.square(data[:, 0] - data[:, 1]).sum())
            if signal > 1.0 and difference > tolerance * signal:
                return False
        return signal > 0.0 and difference <= tolerance * signal
