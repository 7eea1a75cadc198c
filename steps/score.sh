#!/usr/bin/env bash
# Score a decode dir (Kaldi's steps/score_kaldi.sh): best lattice paths for every LM weight in
# --min-lmwt..--max-lmwt and every --word-ins-penalty, WER against <data-dir>/text with kaldialign.
# Writes <decode-dir>/scoring/, wer_<lmwt>_<wip> and best_wer.
set -euo pipefail
nj=1
cmd=${decode_cmd:-esgd-queue}
min_lmwt=7
max_lmwt=17
word_ins_penalty=0.0,0.5,1.0
help_message="Usage: $0 [options] <data-dir> <graph-or-lang-dir> <decode-dir>
e.g.: $0 data/test exp/mono/graph exp/mono/decode_test
Options:
  --min-lmwt <n>                # lowest LM weight (default: $min_lmwt)
  --max-lmwt <n>                # highest LM weight (default: $max_lmwt)
  --word-ins-penalty <list>     # comma-separated penalties (default: $word_ins_penalty)
  --nj <n>                      # processes searching the lattice archives (default: $nj)
  --cmd <cmd>                   # job runner (default: \$decode_cmd from cmd.sh)"
. "$(dirname "$0")/parse_options.sh"
if [ $# -ne 3 ]; then echo "$help_message" >&2; exit 1; fi
data=$1
lang_or_graph=$2
dir=$3
for f in "$data/text" "$lang_or_graph/words.txt"; do
  [ -f "$f" ] || { echo "$0: no such file: $f" >&2; exit 1; }
done
ls "$dir"/lat.*.gz > /dev/null 2>&1 || { echo "$0: no lattices $dir/lat.*.gz" >&2; exit 1; }
rm -f "$dir/best_wer"
$cmd "$dir/log/score.log" esgd-score --nj "$nj" --min-lmwt "$min_lmwt" --max-lmwt "$max_lmwt" \
  --word-ins-penalty "$word_ins_penalty" "$data" "$lang_or_graph" "$dir"
cat "$dir/best_wer"
