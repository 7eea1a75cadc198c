#!/usr/bin/env bash
# Lattice decoding of a data dir with a GMM-HMM system (Kaldi's steps/decode.sh): the model is
# <decode-dir>/../final.mdl. Writes <decode-dir>/lat.JOB.gz (Kaldi text lattices, acoustic costs unscaled),
# timing.JOB, log/, and the real-time factor; then scores with steps/score.sh unless --skip-scoring true.
set -euo pipefail
stage=0
nj=4
cmd=${decode_cmd:-esgd-queue}
beam=13.0
lattice_beam=6.0
max_active=7000
acwt=0.083333
model=
transforms=
skip_scoring=false
scoring_opts=
help_message="Usage: $0 [options] <graph-dir> <data-dir> <decode-dir>
e.g.: $0 --nj 4 exp/mono/graph data/test exp/mono/decode_test
Options:
  --stage <n>              # 0: decode, then score; 1: score the lattices of an earlier complete decoding of
                           # the dir only (default: $stage)
  --nj <n>                 # parallel jobs (default: $nj)
  --cmd <cmd>              # job runner (default: \$decode_cmd from cmd.sh)
  --beam <b>               # decoding beam (default: $beam)
  --lattice-beam <b>       # lattice pruning beam (default: $lattice_beam)
  --max-active <n>         # most tokens kept per frame (default: $max_active)
  --acwt <w>               # acoustic scale during the search (default: $acwt)
  --model <mdl>            # model (default: <decode-dir>/../final.mdl)
  --transforms <ark>       # per-speaker feature transforms, JOB for the job number (fMLLR; steps/decode_fmllr.sh)
  --skip-scoring <bool>    # do not run steps/score.sh (default: $skip_scoring)
  --scoring-opts <opts>    # options for steps/score.sh"
. "$(dirname "$0")/parse_options.sh"
if [ $# -ne 3 ]; then echo "$help_message" >&2; exit 1; fi
graph=$1
data=$2
dir=$3
[ -n "$model" ] || model=$(dirname "$dir")/final.mdl
for f in "$graph/HCLG.fst" "$graph/words.txt" "$data/feats.scp" "$model"; do
  [ -f "$f" ] || { echo "$0: no such file: $f" >&2; exit 1; }
done
mkdir -p "$dir/log"
. "$(dirname "$0")/libs/decoding.sh"
if [ "$stage" -le 0 ]; then
  $cmd JOB=1:"$nj" "$dir/log/decode.JOB.log" esgd-decode-gmm --nj "$nj" --job JOB --beam "$beam" \
    --lattice-beam "$lattice_beam" --max-active "$max_active" --acwt "$acwt" ${transforms:+--transforms "$transforms"} \
    "$graph" "$data" "$model" "$(staging_dir "$dir")"
  finish_decoding "$dir" "$nj" likelihoods
else
  check_decoded "$dir" "$model"
fi
if ! $skip_scoring; then
  "$(dirname "$0")/score.sh" --nj "$nj" --cmd "$cmd" $scoring_opts "$data" "$graph" "$dir"
fi
