"""voicedesk: a speech-first voice assistant for telecom call centres."""

import os
import sys

# A call runs four engines in turn on the same cores (CTranslate2 for Whisper and the
# LLM, torch for embeddings, ONNX Runtime for Piper). OpenMP's default is to keep idle
# worker threads spinning, which starves whichever engine runs next: measured on 2 cores,
# intent recognition right after ASR took 550 ms instead of 187 ms. Passive waiting
# must be chosen before any OpenMP runtime starts, hence here; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# numpy's OpenBLAS (pthreads, not OpenMP, so the policy above does not reach it) starts a
# thread per core for the first large product (Whisper's mel filterbank) and keeps them
# spinning after each: on 2 cores a recording's decoding burnt 1.6 CPU seconds per second
# of work, and two single-threaded Whisper workers ran 1.3 times slower beside them. No
# product code needs a parallel numpy product (the engines bring their own threads), so
# numpy gets one thread unless the caller chose otherwise. The variable only counts
# before numpy loads; where it has loaded already (a script that imported it first),
# the running library is told instead.
if "OPENBLAS_NUM_THREADS" not in os.environ:
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    if "numpy" in sys.modules:
        from threadpoolctl import ThreadpoolController

        ThreadpoolController().select(internal_api="openblas").limit(limits=1)

__version__ = "0.1.0"
