#!/usr/bin/env bash
# Estimate a modified Kneser-Ney n-gram LM on the training transcripts only; report dev perplexity.
set -euo pipefail
cmd=${train_cmd:-esgd-queue}
order=3
help_message="Usage: $0 [options] <train-data-dir> <dev-data-dir> <lm-dir>
e.g.: $0 data/train data/dev data/local/lm
Writes <lm-dir>/lm.arpa and <lm-dir>/ppl_dev.txt.
Options:
  --order <n>   # n-gram order (default: $order)
  --cmd <cmd>   # job runner (default: \$train_cmd from cmd.sh)"
. "$(dirname "$0")/../steps/parse_options.sh"
if [ $# -ne 3 ]; then echo "$help_message" >&2; exit 1; fi
$cmd exp/train_lm/log/train_lm.log esgd-train-lm --order "$order" "$1" "$2" "$3"
