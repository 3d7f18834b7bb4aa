#!/usr/bin/env bash
# Set up (first run only), then run the test suite. "No tests collected" is a failure.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/setup.sh" || exit 1
# The simulated caller in `voicedesk simulate --audio` speaks with Debian's espeak-ng.
if ! command -v espeak-ng >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng) \
    >/dev/null 2>&1 || echo "test.sh: could not install espeak-ng; audio scenarios will skip" >&2
fi
cd "$here"
.venv/bin/python -m pytest "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "test.sh: pytest collected no tests; that is a failure" >&2
  exit 1
fi
exit "$status"
