#!/usr/bin/env bash
# Speaker-adapted features of a data dir as a new Kaldi data dir (Kaldi's steps/nnet/make_fmllr_feats.sh): the
# SAT system's front end (per-speaker CMVN, splicing +-context, final.mat = LDA+MLLT) and the speakers' fMLLR
# transforms (<trans-dir>/trans.JOB.ark, from steps/align_fmllr.sh or steps/decode_fmllr.sh), not spliced
# afterwards: 40-dim features in <out-data>/data/feats.JOB.ark, <out-data>/feats.scp, and the source's text,
# utt2spk, spk2utt, ... (no cmvn.scp: the features are speaker-normalised already).
set -euo pipefail
nj=4
cmd=${train_cmd:-esgd-queue}
help_message="Usage: $0 [options] <out-data-dir> <src-data-dir> <model> <trans-dir> <log-dir>
e.g.: $0 --nj 4 data/train_fmllr data/train exp/tri3/final.mdl exp/tri3_ali exp/make_fmllr/train
<trans-dir> holds trans.1.ark .. trans.N.ark and num_jobs (N must be the number of jobs that made them).
Options:
  --nj <n>      # parallel jobs; must equal <trans-dir>/num_jobs (default: $nj)
  --cmd <cmd>   # job runner (default: \$train_cmd from cmd.sh)"
. "$(dirname "$0")/parse_options.sh"
if [ $# -ne 5 ]; then echo "$help_message" >&2; exit 1; fi
out=$1
src=$2
model=$3
transdir=$4
logdir=$5
for f in "$src/feats.scp" "$src/utt2spk" "$model" "$transdir/trans.1.ark" "$transdir/num_jobs"; do
  [ -f "$f" ] || { echo "$0: no such file: $f" >&2; exit 1; }
done
if [ "$(cat "$transdir/num_jobs")" != "$nj" ]; then
  echo "$0: --nj $nj differs from $transdir/num_jobs ($(cat "$transdir/num_jobs")): transforms are per job" >&2; exit 1
fi
tmp=$(dirname "$out")/.$(basename "$out").tmp
rm -rf "$tmp"
mkdir -p "$tmp/data" "$logdir"
for f in text utt2spk spk2utt spk2gender utt2dur utt2num_frames wav.scp segments; do
  [ -f "$src/$f" ] && cp "$src/$f" "$tmp/$f"
done
$cmd JOB=1:"$nj" "$logdir/make_fmllr_feats.JOB.log" esgd-fmllr make-feats --nj "$nj" --job JOB \
  --transforms "$transdir/trans.JOB.ark" "$src" "$model" "$tmp/data"
final_data=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")/data
for j in $(seq "$nj"); do sed "s|$tmp/data|$final_data|" "$tmp/data/feats.$j.scp"; done | sort > "$tmp/feats.scp"
rm -f "$tmp"/data/feats.*.scp
[ "$(wc -l < "$tmp/feats.scp")" -eq "$(wc -l < "$src/feats.scp")" ] || {
  echo "$0: $(wc -l < "$tmp/feats.scp") of $(wc -l < "$src/feats.scp") utterances written (see $logdir)" >&2; exit 1; }
rm -rf "$out"
mv "$tmp" "$out"
echo "$0: wrote $out ($(wc -l < "$out/feats.scp") utterances, speaker-adapted features of $model)"
