#!/usr/bin/env bash
# Two-pass speaker-adapted decoding with a SAT GMM-HMM system (Kaldi's steps/decode_fmllr.sh): a first pass on
# the speaker-independent features (<decode-dir>.si), per-speaker fMLLR transforms estimated from the best paths of
# its lattices (silence frames weighted by --silence-weight), then the final pass on the adapted features
# (<decode-dir>, with trans.JOB.ark), scored with steps/score.sh. The model is <decode-dir>/../final.mdl.
set -euo pipefail
stage=0
nj=4
cmd=${decode_cmd:-esgd-queue}
beam=13.0
lattice_beam=6.0
first_beam=10.0
max_active=7000
acwt=0.083333
silence_weight=0.01
fmllr_update_type=full
skip_scoring=false
scoring_opts=
help_message="Usage: $0 [options] <graph-dir> <data-dir> <decode-dir>
e.g.: $0 --nj 4 exp/tri3/graph data/test exp/tri3/decode_test
Options:
  --stage <n>               # 0: both passes, then score; 1: score the lattices of an earlier complete decoding of
                            # the dir only (default: $stage)
  --nj <n>                  # parallel jobs (default: $nj)
  --cmd <cmd>               # job runner (default: \$decode_cmd from cmd.sh)
  --beam <b>                # beam of the final pass (default: $beam)
  --first-beam <b>          # beam of the speaker-independent first pass (default: $first_beam)
  --lattice-beam <b>        # lattice pruning beam (default: $lattice_beam)
  --max-active <n>          # most tokens kept per frame, both passes (default: $max_active)
  --acwt <w>                # acoustic scale (default: $acwt); the first pass's best paths use LM weight 1/acwt
  --silence-weight <w>      # weight of silence frames in the fMLLR statistics (default: $silence_weight)
  --fmllr-update-type <t>   # full|diag|offset (default: $fmllr_update_type)
  --skip-scoring <bool>     # do not run steps/score.sh (default: $skip_scoring)
  --scoring-opts <opts>     # options for steps/score.sh"
. "$(dirname "$0")/parse_options.sh"
if [ $# -ne 3 ]; then echo "$help_message" >&2; exit 1; fi
graph=$1
data=$2
dir=$3
srcdir=$(dirname "$dir")
for f in "$graph/HCLG.fst" "$graph/words.txt" "$graph/phones/silence.int" "$data/feats.scp" "$data/utt2spk" \
         "$srcdir/final.mdl"; do
  [ -f "$f" ] || { echo "$0: no such file: $f" >&2; exit 1; }
done
mkdir -p "$dir/log"
if [ "$stage" -le 0 ]; then
  echo "$0: pass 1 (speaker-independent features) -> $dir.si"
  "$(dirname "$0")/decode.sh" --nj "$nj" --cmd "$cmd" --beam "$first_beam" --lattice-beam "$lattice_beam" \
    --max-active "$max_active" --acwt "$acwt" --model "$srcdir/final.mdl" --skip-scoring true "$graph" "$data" "$dir.si"
  lmwt=$(awk -v a="$acwt" 'BEGIN {printf "%.6g", 1 / a}')
  echo "$0: fMLLR transforms from the first pass's best paths"
  $cmd JOB=1:"$nj" "$dir/log/fmllr.JOB.log" esgd-fmllr est --nj "$nj" --job JOB --lattices "$dir.si" \
    --lm-weight "$lmwt" --silence-weight "$silence_weight" --silence-phones "$graph/phones/silence.int" \
    --fmllr-update-type "$fmllr_update_type" "$data" "$srcdir/final.mdl" "$dir/trans.JOB.ark"
fi
echo "$0: pass 2 (adapted features) -> $dir"
"$(dirname "$0")/decode.sh" --nj "$nj" --cmd "$cmd" --beam "$beam" --lattice-beam "$lattice_beam" --acwt "$acwt" \
  --max-active "$max_active" --model "$srcdir/final.mdl" --transforms "$dir/trans.JOB.ark" --stage "$stage" \
  --skip-scoring "$skip_scoring" --scoring-opts "$scoring_opts" "$graph" "$data" "$dir"
