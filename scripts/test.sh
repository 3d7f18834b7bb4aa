#!/usr/bin/env bash
# Set up (first run only), then run the test suite. "No tests collected" is a failure.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/setup.sh" || exit 1
# Debian packages the tests use, installed in one apt transaction when missing (as root):
# espeak-ng, the simulated caller's voice in `voicedesk simulate --audio`; postgresql, the
# server that tests/pg_server.py starts (initdb, pg_ctl) so the store is tested on it too;
# sip-tester (SIPp) and baresip, the real SIP peers that call the SIP gateway.
packages=()
command -v espeak-ng >/dev/null 2>&1 || packages+=(espeak-ng)
command -v sipp >/dev/null 2>&1 || packages+=(sip-tester)
command -v baresip >/dev/null 2>&1 || packages+=(baresip)
compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || packages+=(postgresql)
if [ "${#packages[@]}" -gt 0 ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    "${packages[@]}") >/dev/null 2>&1 \
    || echo "test.sh: could not install ${packages[*]}; tests that need them will skip" >&2
fi
cd "$here"
.venv/bin/python -m pytest "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "test.sh: pytest collected no tests; that is a failure" >&2
  exit 1
fi
exit "$status"
