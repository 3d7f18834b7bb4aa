"""A real softphone calls the assistant: baresip dials the SIP gateway on loopback.

baresip plays a spoken WAV as its microphone and dumps what it hears
(``sndfile``); the gateway's handler plays a spoken reply and hangs up. Both
recordings, decoded from G.711, must transcribe with the project's own ASR to
what was said.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.audio import load_audio, resample
from asr.transcriber import create_transcriber
from tests.conftest import JFK, wer
from tests.sip.peers import BARESIP, NEED_BARESIP, RecordingHandler, stop_process
from voice.gateways.sip import SipGateway, SipOptions
from voicedesk.config import Config, TelephonyConfig
from voicedesk.models.prepare import ModelStore

pytestmark = pytest.mark.skipif(BARESIP is None, reason=NEED_BARESIP)

CALLER = "Hello, I would like to check the balance on my account please."
MODULES = "/usr/lib/baresip/modules"
REPLY = ("And so my fellow Americans, ask not what your country can do for you, "
         "ask what you can do for your country.")


def _baresip_config(folder: Path, microphone: Path, recordings: Path) -> Path:
    conf = folder / "baresip"
    conf.mkdir()
    (conf / "config").write_text(f"""poll_method\tepoll
sip_listen\t127.0.0.1:0
sip_trans_def\tudp
audio_player\taubridge,nil
audio_source\taufile,{microphone}
audio_alert\taubridge,nil
audio_srate\t8000
audio_channels\t1
module_path\t{MODULES}
module\tg711.so
module\taufile.so
module\taubridge.so
module\tsndfile.so
module\tmenu.so
module_app\taccount.so
snd_path\t{recordings}
""")
    (conf / "accounts").write_text("<sip:+15550199@127.0.0.1>;regint=0;audio_codecs=PCMU\n")
    return conf


def _speak(text: str, path: Path, silence_after_s: float = 0.0) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    wav = path.with_suffix(".22k.wav")
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), text], check=True, timeout=30)
    samples = load_audio(wav, rate=8000).samples
    samples = np.concatenate([samples, np.zeros(int(silence_after_s * 8000), np.float32)])
    sf.write(path, samples, 8000, subtype="PCM_16")
    return path


def test_baresip_call_hears_the_reply_that_transcribes_to_what_was_said(
        tmp_path: Path, config: Config) -> None:
    if not Path(MODULES, "sndfile.so").exists():
        pytest.skip(f"baresip's sndfile module is not in {MODULES}")
    # baresip hangs up when its microphone file ends: keep it open past our reply.
    microphone = _speak(CALLER, tmp_path / "caller.wav", silence_after_s=16.0)
    if not JFK.exists():
        pytest.skip(f"the reply recording {JFK} is not available")
    reply = load_audio(JFK, rate=8000).samples  # a real voice, as the assistant's reply
    recordings = tmp_path / "heard"
    recordings.mkdir()
    conf = _baresip_config(tmp_path, microphone, recordings)
    handler = RecordingHandler(reply, hang_up_after_play=True, tail_s=1.0)

    async def call() -> str:
        gateway = SipGateway(TelephonyConfig(rtp_ports=""), handler, "127.0.0.1", 0,
                             SipOptions())
        await gateway.start()
        try:
            phone = await asyncio.create_subprocess_exec(
                BARESIP, "-f", str(conf), "-e", f"/dial sip:assistant@127.0.0.1:{gateway.port}",
                "-t", "30", stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT)
            try:
                output, _ = await asyncio.wait_for(phone.communicate(), 40)
            finally:
                await stop_process(phone)
        finally:
            await gateway.stop()
        return output.decode(errors="replace")

    output = asyncio.run(call())
    assert "Call established" in output, output[-3000:]
    assert len(handler.calls) == 1, output[-3000:]
    record = handler.calls[0]
    assert record["closed"] == "hangup"
    assert record["info"].caller_id == "+15550199"
    heard = sorted(recordings.glob("*-dec.wav"))
    assert heard, f"baresip wrote no recording: {list(recordings.iterdir())}"
    phone_heard, rate = sf.read(heard[0], dtype="float32")
    assert rate == 8000
    assert len(phone_heard) >= len(reply), output[-1500:]  # all of the reply reached the phone

    transcriber = create_transcriber(config.asr, ModelStore(config.models_dir))
    said = transcriber.transcribe(resample(phone_heard, 8000, 16000)).text
    assert wer(REPLY, said) <= 0.1, said
    got = transcriber.transcribe(resample(record["audio"], 8000, 16000)).text
    assert wer(CALLER, got) <= 0.2, got
