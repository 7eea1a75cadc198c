# Environment of the recipe (source it): the project's virtualenv first on PATH, Kaldi's C sorting locale.
ESGD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PATH="$ESGD_ROOT/.venv/bin:$PATH"
export LC_ALL=C
export PYTHONUNBUFFERED=1
