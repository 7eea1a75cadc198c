#!/usr/bin/env bash
# Copy a lang dir and add G.fst made from an ARPA LM (as Kaldi's utils/format_lm.sh).
set -euo pipefail
nj=1
cmd=${train_cmd:-esgd-queue}
help_message="Usage: $0 [options] <lang-dir> <lm.arpa> <lang-test-dir>
e.g.: $0 data/lang data/local/lm/lm.arpa data/lang_test
Options:
  --nj <n>      # accepted for uniformity; this is one job
  --cmd <cmd>   # job runner (default: \$train_cmd from cmd.sh)"
. "$(dirname "$0")/parse_options.sh"
if [ $# -ne 3 ]; then echo "$help_message" >&2; exit 1; fi
[ -f "$1/words.txt" ] || { echo "$0: no words.txt in lang dir $1" >&2; exit 1; }
$cmd "exp/format_lm/$(basename "$3")/log/format_lm.log" esgd-format-lm "$1" "$2" "$3"
