#!/usr/bin/env bash
# Pronunciation dictionary for the words of the given data dirs: CMUdict, then espeak-ng G2P for the rest.
set -euo pipefail
cmd=${train_cmd:-esgd-queue}
help_message="Usage: $0 [options] <dict-dir> <data-dir> [<data-dir> ...]
e.g.: $0 data/local/dict data/train data/dev data/test
Options:
  --cmd <cmd>   # job runner (default: \$train_cmd from cmd.sh)"
. "$(dirname "$0")/../steps/parse_options.sh"
if [ $# -lt 2 ]; then echo "$help_message" >&2; exit 1; fi
$cmd exp/prepare_dict/log/prepare_dict.log esgd-prepare-dict "$@"
