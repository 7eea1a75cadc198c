#!/usr/bin/env bash
# Build a lang dir from a dict dir: position-dependent phones, disambiguation symbols, phones.txt,
# words.txt, topo, phones/*, L.fst and L_disambig.fst (as Kaldi's utils/prepare_lang.sh).
set -euo pipefail
nj=1
cmd=${train_cmd:-esgd-queue}
sil_prob=0.5
help_message="Usage: $0 [options] <dict-dir> <oov-word> <lang-dir>
e.g.: $0 data/local/dict '<unk>' data/lang
Options:
  --sil-prob <p>   # probability of optional silence between words (default: $sil_prob)
  --nj <n>         # accepted for uniformity; this is one job
  --cmd <cmd>      # job runner (default: \$train_cmd from cmd.sh)"
. "$(dirname "$0")/parse_options.sh"
if [ $# -ne 3 ]; then echo "$help_message" >&2; exit 1; fi
[ -f "$1/lexicon.txt" ] || { echo "$0: no lexicon.txt in dict dir $1" >&2; exit 1; }
$cmd "exp/prepare_lang/$(basename "$3")/log/prepare_lang.log" \
  esgd-prepare-lang --sil-prob "$sil_prob" "$1" "$2" "$3"
