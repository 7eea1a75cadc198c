#!/usr/bin/env bash
# A Kaldi data dir's own features (feats.scp, cmvn.scp) for the data dir imported from it, instead of PLP.
set -euo pipefail
nj=1
cmd=${train_cmd:-esgd-queue}
help_message="Usage: $0 [options] <source-data-dir> <data-dir> [<log-dir>]
e.g.: $0 /kaldi/egs/swbd/s5c/data/train data/train exp/make_plp/train
Every utterance of <data-dir> needs a matrix in <source-data-dir>/feats.scp (compressed ones too); its cmvn.scp,
where present, is taken as well, else run steps/compute_cmvn_stats.sh after this.
Options:
  --nj <n>      # accepted for uniformity; this is one job
  --cmd <cmd>   # job runner (default: \$train_cmd from cmd.sh)"
. "$(dirname "$0")/parse_options.sh"
if [ $# -lt 2 ] || [ $# -gt 3 ]; then echo "$help_message" >&2; exit 1; fi
source=$1
data=$2
logdir=${3:-$data/log}
for f in "$source/feats.scp" "$source/utt2spk" "$data/utt2spk"; do
  [ -f "$f" ] || { echo "$0: no such file: $f" >&2; exit 1; }
done
mkdir -p "$logdir"
$cmd "$logdir/import_feats_$(basename "$data").log" esgd-import-feats "$source" "$data"
