#!/usr/bin/env bash
# Compute PLP features of a data dir (Kaldi's compute-plp-feats semantics) in --nj parallel jobs; writes
# <plp-dir>/plp_<name>.JOB.{ark,scp}, then <data-dir>/feats.scp and utt2num_frames once every job succeeded
# (removing the old features' cmvn.scp).
set -euo pipefail
nj=4
cmd=${train_cmd:-esgd-queue}
plp_config=conf/plp.conf
help_message="Usage: $0 [options] <data-dir> [<log-dir> [<plp-dir>]]
e.g.: $0 --nj 8 data/train exp/make_plp/train plp
Options:
  --plp-config <file>   # PLP options, Kaldi style (default: $plp_config)
  --nj <n>              # parallel jobs (default: $nj)
  --cmd <cmd>           # job runner (default: \$train_cmd from cmd.sh)"
. "$(dirname "$0")/parse_options.sh"
if [ $# -lt 1 ] || [ $# -gt 3 ]; then echo "$help_message" >&2; exit 1; fi
data=$1
logdir=${2:-$data/log}
plpdir=${3:-$data/data}
name=$(basename "$data")
for f in "$data/wav.scp" "$plp_config"; do
  [ -f "$f" ] || { echo "$0: no such file: $f" >&2; exit 1; }
done
mkdir -p "$logdir" "$plpdir"
# the jobs write aside (<plp-dir>/.new_<name>); the merge moves their parts in once all succeeded, so a failed run
# leaves the data dir's features (and its cmvn.scp) as they were
$cmd JOB=1:"$nj" "$logdir/make_plp_$name.JOB.log" \
  esgd-compute-plp --config "$plp_config" --nj "$nj" --job JOB --name "$name" "$data" "$plpdir"
esgd-compute-plp --merge --nj "$nj" --name "$name" "$data" "$plpdir"
