"""One typed configuration tree.

Sources, later ones winning: the defaults below, a ``voicedesk.toml`` file,
then environment variables ``VOICEDESK_<SECTION>_<KEY>`` (for example
``VOICEDESK_ASR_MODEL=base``). ``VOICEDESK_HOME`` moves models, the default
SQLite store and audio; ``VOICEDESK_DATABASE_URL`` (any SQLAlchemy URL)
replaces the store.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from voicedesk.errors import ConfigError

ENV_PREFIX = "VOICEDESK_"


@dataclass
class AsrConfig:
    backend: str = "faster-whisper"
    model: str = "tiny.en"
    language: str = "en"
    compute_type: str = "int8"
    beam_size: int = 1
    threads: int = 0  # 0: all cores
    # The shortest window Whisper's encoder looks at in a live streaming pass and in a piece
    # of a recording in batch, in seconds (asr/encoder_context.py): its audio plus 2 s, never
    # less than this; 30 is Whisper's full window (what passes for an expected answer use).
    context_s: float = 15.0
    # Batch transcription: pack several recordings' speech into shared 30-s windows (about
    # 10 % faster on many short files), instead of hearing each recording alone. Off: a
    # packed recording's words depend on the recordings beside it (5.50 % WER pooled over
    # five orders of the dev files against 5.21 % alone; benchmarks/README.md).
    pack: bool = False


@dataclass
class LlmConfig:
    engine: str = "ctranslate2"
    model: str = "smollm2-135m-instruct"
    compute_type: str = "int8"
    max_new_tokens: int = 64
    temperature: float = 0.0
    threads: int = 0
    # engine = "openai-http": an OpenAI-compatible server (vLLM, llama.cpp, Ollama) on a GPU
    # machine; ``model`` is then the name the server lists at {base_url}/models.
    base_url: str = ""  # e.g. http://gpu1:8000/v1
    # The key itself never enters this tree, so `config show` cannot print it: only the
    # name of the environment variable that holds it (unset or empty: no key is sent).
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 30.0  # connect, and the longest wait for each piece of an answer


@dataclass
class TtsConfig:
    backend: str = "piper"
    voice: str = "en_US-joe-medium"  # backend coqui: a Coqui model name or folder instead
    length_scale: float = 1.0
    # backend = "coqui": Coqui TTS runs in its own environment (it needs torchaudio, which
    # the default torch lacks): that environment's python, e.g. /opt/coqui/bin/python.
    coqui_python: str = ""
    coqui_speaker: str = ""  # for multi-speaker Coqui models (e.g. p225 for VCTK)
    # Sentences already spoken are kept for every call in the process (prompts repeat all
    # day): this many MB of audio, least recently used dropped first; 0 turns it off.
    cache_mb: int = 64


@dataclass
class VadConfig:
    backend: str = "webrtcvad"
    aggressiveness: int = 2  # webrtcvad mode, 0 (lenient) to 3 (strict)
    frame_ms: int = 30  # webrtcvad's frame; Silero's is fixed at 32 ms
    silero_threshold: float = 0.5  # backend silero: speech probability that counts as speech
    min_speech_ms: int = 250  # shorter bursts are noise, not a turn
    end_silence_ms: int = 700  # silence that ends a turn
    padding_ms: int = 150  # audio kept either side of the speech
    # Live calls end a turn on silence AND words: a turn whose words sound finished ("what
    # is my balance?") ends after the short silence; one that stops mid-sentence ("my
    # account number is") waits for the long one; end_silence_ms when the words are unclear.
    end_silence_complete_ms: int = 300
    end_silence_incomplete_ms: int = 2000


@dataclass
class NluConfig:
    domain: str = "telecom"  # a folder under nlu/domain, or a path to one
    embeddings: str = "all-minilm-l6-v2"
    examples_per_turn: int = 6  # retrieved few-shot examples shown to the LLM
    retrieval_weight: float = 1.0  # weight of the nearest examples' vote beside the LLM
    # An encoder fine-tuned to the catalogue's intents: "domain" trains one from the domain
    # pack on first use (under a minute on 2 cores, then kept in the model cache); a folder
    # names one trained by `voicedesk train intent`; "none" leaves intents to the LLM.
    intent_classifier: str = "domain"
    # Below this top probability the LLM chooses among the classifier's likeliest intents.
    # 0: the classifier always decides. On the 107 held-out telecom turns the untuned LLM
    # below 0.3 changed nothing (87.9 % either way; LLM alone 78.5 %) and cost 190 ms at
    # p95, so it is off; try 0.3 with a fine-tuned LLM (benchmarks/intent.py measures both).
    classifier_confident: float = 0.0
    # Let the LLM reword each flow message (kept only if every fact survives). Off by
    # default: the untuned 135M model's drafts pass the check 16 times in 57, at 1.4 s each.
    llm_wording: bool = False
    history_turns: int = 3


@dataclass
class CallConfig:
    """Turn-taking in live calls (`voicedesk serve`, `talk`, the latency benchmark)."""

    # Prepare the reply from the transcript of a pause, before the endpoint fires; kept
    # only if the final transcript is the same, and only for turns that change nothing.
    early_start: bool = True
    barge_in_ms: int = 120  # caller speech over a reply that pauses it (not echo, not noise)
    # A pause that turns out to be a backchannel ("mhm", "okay") or a noise resumes the reply.
    backchannels: str = "mhm,mm,hmm,uh huh,yeah,yes,yep,okay,ok,right,sure,alright,i see"
    no_input_s: float = 8.0  # silence after a reply before the caller is prompted again
    no_input_prompts: int = 1  # prompts before a polite hang-up
    dtmf_timeout_s: float = 3.0  # keypad digits end with # or after this pause
    first_piece_words: int = 8  # split a long first sentence at a comma for an earlier start
    model_check_s: float = 2.0  # how often a live service looks for a newly promoted model


@dataclass
class TelephonyConfig:
    """Gateways to phone systems (`voicedesk serve`) and how calls leave them."""

    sip: str = ""  # HOST:PORT to listen for SIP over UDP; empty: off unless --sip
    audiosocket: str = ""  # HOST:PORT for Asterisk AudioSocket (TCP)
    websocket: str = ""  # HOST:PORT for Twilio media streams and raw-PCM audio forks
    metrics: str = ""  # HOST:PORT for Prometheus metrics (/metrics); empty: off
    public_address: str = ""  # address put in SDP and Contact; empty: the listening one
    rtp_ports: str = "20000-20999"  # UDP range for RTP media
    # Where a call goes when the assistant hands it to a person: a SIP URI for REFER
    # (sip:agents@pbx.example.com), or a number/URI the WebSocket side is told to dial.
    transfer_target: str = ""
    summary_webhook: str = ""  # POST the call summary (JSON) here on transfer; empty: off
    registrar: str = ""  # optional SIP trunk or registrar to REGISTER with (sip:host:port)
    username: str = ""
    password_env: str = "VOICEDESK_SIP_PASSWORD"  # the password's environment variable


@dataclass
class DatabaseConfig:
    url: str = ""  # empty: a SQLite file in VOICEDESK_HOME


@dataclass
class Config:
    home: Path = field(default_factory=lambda: Path(platformdirs.user_cache_dir("voicedesk")))
    asr: AsrConfig = field(default_factory=AsrConfig)
    llm: LlmConfig = field(default_factory=LlmConfig)
    tts: TtsConfig = field(default_factory=TtsConfig)
    vad: VadConfig = field(default_factory=VadConfig)
    nlu: NluConfig = field(default_factory=NluConfig)
    call: CallConfig = field(default_factory=CallConfig)
    telephony: TelephonyConfig = field(default_factory=TelephonyConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    source: str = "defaults"  # where the file part came from, for `config show`

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def audio_dir(self) -> Path:
        return self.home / "audio"

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.home / 'voicedesk.db'}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"home": str(self.home)}
        for name in _sections():
            out[name] = dataclasses.asdict(getattr(self, name))
        out["database"]["url"] = self.database_url
        return out


def _sections() -> list[str]:
    hints = typing.get_type_hints(Config)
    return [f.name for f in dataclasses.fields(Config) if dataclasses.is_dataclass(hints[f.name])]


def _coerce(value: str | Any, kind: Any, where: str) -> Any:
    """Turn a TOML or environment value into the field's type, or say why not."""
    if isinstance(kind, types.UnionType):
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            lowered = str(value).strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off"}:
                return False
            raise ValueError(value)
        if kind is int:
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value)
        if kind is float:
            return float(value)
        if kind is Path:
            return Path(str(value)).expanduser()
        return str(value)
    except ValueError:
        name = getattr(kind, "__name__", str(kind))
        raise ConfigError(f"{where} = {value!r} is not a valid {name}") from None


def _apply(section_obj: Any, section: str, values: dict[str, Any], origin: str) -> None:
    hints = typing.get_type_hints(type(section_obj))
    for key, value in values.items():
        if key not in hints:
            known = ", ".join(sorted(hints))
            raise ConfigError(f"{origin}: unknown setting [{section}] {key}; known keys: {known}")
        setattr(section_obj, key, _coerce(value, hints[key], f"{origin}: [{section}] {key}"))


def find_config_file(explicit: Path | None, environ: dict[str, str]) -> Path | None:
    """The file to read: --config, then VOICEDESK_CONFIG, then ./voicedesk.toml."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"config file {explicit} does not exist")
        return explicit
    env = environ.get(ENV_PREFIX + "CONFIG")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ConfigError(f"VOICEDESK_CONFIG={env} does not exist")
        return path
    local = Path("voicedesk.toml")
    return local if local.is_file() else None


def load_config(path: Path | None = None, environ: dict[str, str] | None = None) -> Config:
    """Build the effective configuration from defaults, file and environment."""
    env = dict(os.environ if environ is None else environ)
    config = Config()
    sections = _sections()
    file = find_config_file(path, env)
    if file is not None:
        try:
            data = tomllib.loads(file.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {file} is not valid TOML: {exc}") from None
        config.source = str(file)
        for key, value in data.items():
            if key == "home":
                config.home = _coerce(value, Path, f"{file}: home")
            elif key in sections and isinstance(value, dict):
                _apply(getattr(config, key), key, value, str(file))
            else:
                raise ConfigError(
                    f"{file}: unknown section [{key}]; known: home, {', '.join(sections)}"
                )
    if env.get(ENV_PREFIX + "HOME"):
        config.home = Path(env[ENV_PREFIX + "HOME"]).expanduser()
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in {ENV_PREFIX + "HOME", ENV_PREFIX + "CONFIG"}:
            continue
        rest = name[len(ENV_PREFIX):].lower()
        section = next((s for s in sections if rest.startswith(s + "_")), None)
        if section is None:
            continue  # not ours to judge: other tools may share the prefix
        key = rest[len(section) + 1:]
        _apply(getattr(config, section), section, {key: value}, f"environment {name}")
    return config


def render_toml(config: Config) -> str:
    """The effective configuration as TOML, for `voicedesk config show`."""
    data = config.to_dict()
    lines = [f"# effective configuration (file: {config.source}; env: VOICEDESK_*)"]
    lines.append(f'home = "{data.pop("home")}"')
    for section, values in data.items():
        lines.append(f"\n[{section}]")
        for key, value in values.items():
            if isinstance(value, bool):
                rendered = "true" if value else "false"
            elif isinstance(value, int | float):
                rendered = str(value)
            else:
                rendered = '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
            lines.append(f"{key} = {rendered}")
    return "\n".join(lines) + "\n"
