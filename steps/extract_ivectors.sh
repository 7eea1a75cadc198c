#!/usr/bin/env bash
# Extract online i-vectors (one every --ivector-period frames, from the frames so far) for a data dir
# in --nj jobs -> <ivector-dir>/ivector_online.scp, as Kaldi's extract_ivectors_online.sh.
set -euo pipefail
nj=4
cmd=${train_cmd:-esgd-queue}
ivector_config=conf/ivector.conf
device=cpu
help_message="Usage: $0 [options] <data-dir> <extractor-dir> <ivector-dir>
e.g.: $0 --nj 8 data/dev exp/ivector_extractor exp/ivectors_dev
Options:
  --ivector-config <file>   # extraction options (default: $ivector_config)
  --device <cpu|cuda>       # where extraction runs (default: $device)
  --nj <n>                  # parallel jobs, split by speaker (default: $nj)
  --cmd <cmd>               # job runner (default: \$train_cmd from cmd.sh)"
. "$(dirname "$0")/parse_options.sh"
if [ $# -ne 3 ]; then echo "$help_message" >&2; exit 1; fi
data=$1; iedir=$2; dir=$3
for f in "$data/feats.scp" "$iedir/final.ie" "$ivector_config"; do
  [ -f "$f" ] || { echo "$0: no such file: $f" >&2; exit 1; }
done
nspk=$(wc -l < "$data/spk2utt")
[ "$nj" -le "$nspk" ] || nj=$nspk
mkdir -p "$dir/log"
rm -f "$dir/ivector_online.scp"
$cmd JOB=1:"$nj" "$dir/log/extract_ivectors.JOB.log" esgd-extract-ivectors --config "$ivector_config" \
  --device "$device" --nj "$nj" --job JOB "$data" "$iedir" "$dir"
if [ "$nj" -gt 1 ]; then
  for j in $(seq "$nj"); do cat "$dir/ivector_online.$j.scp"; done | sort > "$dir/ivector_online.scp.tmp"
  mv "$dir/ivector_online.scp.tmp" "$dir/ivector_online.scp"
fi
n=$(wc -l < "$dir/ivector_online.scp"); u=$(wc -l < "$data/feats.scp")
[ "$n" -eq "$u" ] || { echo "$0: $dir/ivector_online.scp has $n utterances, $data/feats.scp $u" >&2; exit 1; }
echo "$dir/ivector_online.scp: $n utterances"
