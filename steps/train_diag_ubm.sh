#!/usr/bin/env bash
# Train the diagonal-covariance UBM of the i-vector extractor on a data dir's features (CMVN + deltas) -> final.dubm.
set -euo pipefail
stage=-1
nj=1
cmd=${train_cmd:-esgd-queue}
num_iters=4
delta_order=2
device=cpu
seed=0
help_message="Usage: $0 [options] <data-dir> <num-gauss> <exp-dir>
e.g.: $0 data/train 256 exp/diag_ubm
Options:
  --stage <n>          # -1: afresh; N >= 0: continue a stopped run from <exp-dir>/N.dubm, the model after
                       # N EM passes (default: $stage)
  --num-iters <n>      # EM iterations after initialisation (default: $num_iters)
  --delta-order <n>    # deltas added to the features (default: $delta_order)
  --device <cpu|cuda>  # where EM runs (default: $device)
  --seed <n>           # seed of the frame sample, the initial means and the splits (default: $seed)
  --nj <n>             # accepted for uniformity; EM runs as one job, parallel over torch threads
  --cmd <cmd>          # job runner (default: \$train_cmd from cmd.sh)"
. "$(dirname "$0")/parse_options.sh"
if [ $# -ne 3 ]; then echo "$help_message" >&2; exit 1; fi
data=$1; num_gauss=$2; dir=$3
for f in "$data/feats.scp" "$data/cmvn.scp"; do [ -f "$f" ] || { echo "$0: no such file: $f" >&2; exit 1; }; done
mkdir -p "$dir/log"
$cmd "$dir/log/train_diag_ubm.log" esgd-train-diag-ubm --num-gauss "$num_gauss" --num-iters "$num_iters" \
  --delta-order "$delta_order" --device "$device" --stage "$stage" --srand "$seed" "$data" "$dir"
