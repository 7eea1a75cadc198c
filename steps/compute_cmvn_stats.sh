#!/usr/bin/env bash
# Per-speaker cepstral mean and variance statistics (Kaldi format) of a data dir's features -> <data-dir>/cmvn.scp.
set -euo pipefail
nj=1
cmd=${train_cmd:-esgd-queue}
help_message="Usage: $0 [options] <data-dir> [<log-dir> [<cmvn-dir>]]
e.g.: $0 data/train exp/make_plp/train plp
Options:
  --nj <n>      # accepted for uniformity; this is one job
  --cmd <cmd>   # job runner (default: \$train_cmd from cmd.sh)"
. "$(dirname "$0")/parse_options.sh"
if [ $# -lt 1 ] || [ $# -gt 3 ]; then echo "$help_message" >&2; exit 1; fi
data=$1
logdir=${2:-$data/log}
cmvndir=${3:-$data/data}
name=$(basename "$data")
for f in "$data/feats.scp" "$data/spk2utt"; do
  [ -f "$f" ] || { echo "$0: no such file: $f" >&2; exit 1; }
done
mkdir -p "$logdir" "$cmvndir"
$cmd "$logdir/cmvn_$name.log" esgd-compute-cmvn-stats --name "$name" "$data" "$cmvndir"
