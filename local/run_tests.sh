#!/usr/bin/env bash
# Run the test suite after bootstrapping (.venv, system tools). Extra arguments are passed to pytest. The 25 slowest
# tests are listed at the end; a test that runs past 40 minutes (a hang) fails with its stack instead of stalling CI.
set -euo pipefail
cd "$(dirname "$0")/.."
local/bootstrap.sh
. ./path.sh
exec python -m pytest -q -p no:cacheprovider --durations=25 --timeout=2400 "$@" tests
