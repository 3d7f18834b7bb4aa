"""voicedesk: a speech-first voice assistant for telecom call centres."""

import os

# A call runs four engines in turn on the same cores (CTranslate2 for Whisper and the
# LLM, torch for embeddings, ONNX Runtime for Piper). OpenMP's default is to keep idle
# worker threads spinning, which starves whichever engine runs next: measured on 2 cores,
# intent recognition right after ASR took 550 ms instead of 187 ms. Passive waiting
# must be chosen before any OpenMP runtime starts, hence here; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
