from pathlib import Path

import pytest

from tests.conftest import run_cli
from voicedesk.config import load_config
from voicedesk.errors import ConfigError


def test_defaults_put_everything_under_home(tmp_path: Path) -> None:
    config = load_config(environ={"VOICEDESK_HOME": str(tmp_path)})
    assert config.models_dir == tmp_path / "models"
    assert config.database_url == f"sqlite:///{tmp_path / 'voicedesk.db'}"
    assert config.asr.model == "tiny.en"
    assert config.llm.engine == "ctranslate2"


def test_file_values_are_read_and_typed(tmp_path: Path) -> None:
    file = tmp_path / "voicedesk.toml"
    file.write_text('[asr]\nmodel = "base"\nbeam_size = 5\n[vad]\nend_silence_ms = 900\n')
    config = load_config(file, environ={})
    assert (config.asr.model, config.asr.beam_size, config.vad.end_silence_ms) == ("base", 5, 900)


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    file = tmp_path / "voicedesk.toml"
    file.write_text('[llm]\nengine = "transformers"\n')
    config = load_config(file, environ={"VOICEDESK_LLM_ENGINE": "ctranslate2",
                                        "VOICEDESK_LLM_MAX_NEW_TOKENS": "32",
                                        "VOICEDESK_DATABASE_URL": "postgresql://db/voicedesk"})
    assert config.llm.engine == "ctranslate2"
    assert config.llm.max_new_tokens == 32
    assert config.database_url == "postgresql://db/voicedesk"


def test_unknown_key_names_the_key_and_the_known_ones(tmp_path: Path) -> None:
    file = tmp_path / "voicedesk.toml"
    file.write_text("[asr]\nmodle = 'base'\n")
    with pytest.raises(ConfigError, match=r"unknown setting \[asr\] modle; known keys: .*model"):
        load_config(file, environ={})


def test_badly_typed_environment_value_is_rejected() -> None:
    with pytest.raises(ConfigError, match="VOICEDESK_ASR_BEAM_SIZE.*'five' is not a valid int"):
        load_config(environ={"VOICEDESK_ASR_BEAM_SIZE": "five"})


def test_invalid_toml_is_a_one_line_error(tmp_path: Path) -> None:
    file = tmp_path / "voicedesk.toml"
    file.write_text("[asr\nmodel=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(file, environ={})


def test_config_show_prints_the_effective_configuration(home: Path) -> None:
    (home / "voicedesk.toml").write_text('[tts]\nlength_scale = 1.2\n')
    result = run_cli(["config", "show"], home)
    assert result.returncode == 0, result.stderr
    assert "[asr]" in result.stdout and 'model = "tiny.en"' in result.stdout
    assert "length_scale = 1.2" in result.stdout
    assert f'home = "{home}"' in result.stdout
