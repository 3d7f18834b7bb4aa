#!/usr/bin/env bash
# Set up (first run only), then answer an example call on the bundled defaults.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/setup.sh"
exec "$here/.venv/bin/voicedesk" demo "$@"
