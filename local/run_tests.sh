#!/usr/bin/env bash
# Run the test suite after bootstrapping (.venv, system tools). Extra arguments are passed to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
local/bootstrap.sh
. ./path.sh
exec python -m pytest -q -p no:cacheprovider --durations=25 "$@" tests
