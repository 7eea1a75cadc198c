#!/usr/bin/env bash
# Train a total-variability i-vector extractor by EM on top of a diagonal UBM -> final.ie.
set -euo pipefail
stage=-1
nj=1
cmd=${train_cmd:-esgd-queue}
ivector_dim=100
num_iters=10
device=cpu
seed=0
help_message="Usage: $0 [options] <data-dir> <diag-ubm-dir> <exp-dir>
e.g.: $0 data/train exp/diag_ubm exp/ivector_extractor
Options:
  --stage <n>          # -1: afresh; N >= 0: continue a stopped run from <exp-dir>/N.ie, the model after
                       # N EM passes (default: $stage)
  --ivector-dim <n>    # i-vector dimension (default: $ivector_dim)
  --num-iters <n>      # EM iterations (default: $num_iters)
  --device <cpu|cuda>  # where EM runs (default: $device)
  --seed <n>           # seed of the random initial projection matrices (default: $seed)
  --nj <n>             # accepted for uniformity; EM runs as one job, parallel over torch threads
  --cmd <cmd>          # job runner (default: \$train_cmd from cmd.sh)"
. "$(dirname "$0")/parse_options.sh"
if [ $# -ne 3 ]; then echo "$help_message" >&2; exit 1; fi
data=$1; ubmdir=$2; dir=$3
for f in "$data/feats.scp" "$ubmdir/final.dubm"; do [ -f "$f" ] || { echo "$0: no such file: $f" >&2; exit 1; }; done
mkdir -p "$dir/log"
$cmd "$dir/log/train_ivector_extractor.log" esgd-train-ivector-extractor --ivector-dim "$ivector_dim" \
  --num-iters "$num_iters" --device "$device" --stage "$stage" --srand "$seed" "$data" "$ubmdir" "$dir"
