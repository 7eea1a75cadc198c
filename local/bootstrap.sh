#!/usr/bin/env bash
# Make this checkout runnable on a fresh Debian machine with Python >= 3.11: install the system tools the
# recipe calls (the synthesisers espeak-ng, festival with three English voices and flite, sox, fortunes text,
# python3-venv) when missing, then create .venv and
# `pip install -e .[dev]`. torch==2.13.0 is installed only when no torch is importable: a Python that
# already has torch (e.g. a CUDA build) lends it to the venv. Fast no-op once done.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."  # the real checkout, also when called through a symlink
python=${PYTHON:-python3}
say() { echo "bootstrap: $*" >&2; }

command -v "$python" >/dev/null || { say "$python not found; install Python >= 3.11"; exit 1; }
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { say "Python >= 3.11 is needed ($python is $("$python" --version 2>&1))"; exit 1; }

missing=()
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v sox >/dev/null || missing+=(sox)
command -v festival >/dev/null || missing+=(festival)
command -v flite >/dev/null || missing+=(flite)
voices=/usr/share/festival/voices
[ -d $voices/english/kal_diphone ] || missing+=(festvox-kallpc16k)
[ -d $voices/english/ked_diphone ] || missing+=(festvox-kdlpc16k)
[ -d $voices/us/cmu_us_slt_arctic_hts ] || missing+=(festvox-us-slt-hts)
[ -f /usr/share/games/fortunes/fortunes ] || missing+=(fortunes)
[ -x .venv/bin/python ] || "$python" -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    say "missing system tools: ${missing[*]} (no apt-get here: install them with your package manager)"; exit 1
  fi
  if [ "$(id -u)" -eq 0 ]; then apt=(apt-get)
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then apt=(sudo apt-get)
  else say "missing system tools: ${missing[*]}; run: sudo apt-get install ${missing[*]}"; exit 1
  fi
  say "installing ${missing[*]} with apt-get"
  if ! { "${apt[@]}" update -qq && DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq "${missing[@]}"; } \
       > /tmp/esgd-bootstrap-apt.log 2>&1; then
    say "apt-get install ${missing[*]} failed (see /tmp/esgd-bootstrap-apt.log)"; exit 1
  fi
fi

stamp=.venv/.bootstrapped-$(cat setup.py | sha1sum | cut -c1-12)
[ -f "$stamp" ] && exit 0
if [ ! -x .venv/bin/python ]; then
  venv_opts=()
  if "$python" -c 'import torch' 2>/dev/null; then venv_opts+=(--system-site-packages); fi
  say "creating .venv"
  "$python" -m venv "${venv_opts[@]+"${venv_opts[@]}"}" .venv
fi
if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  say "installing torch==2.13.0"
  .venv/bin/pip install -q torch==2.13.0 || { say "pip install torch==2.13.0 failed"; exit 1; }
fi
say "installing esgd-asr and its dependencies into .venv"
.venv/bin/pip install -q -e ".[dev]" || { say "pip install -e .[dev] failed"; exit 1; }
rm -f .venv/.bootstrapped-*
touch "$stamp"
