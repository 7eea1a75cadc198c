#!/usr/bin/env bash
# Align a data dir with a speaker-adapted (SAT) GMM-HMM system (Kaldi's steps/align_fmllr.sh): training graphs,
# a first alignment on the speaker-independent features (the model's front end), per-speaker fMLLR transforms from
# it, then the final alignment on the adapted features; frames per pdf (senone counts for priors).
# Writes <ali-dir>/{final.mdl,tree,phones.txt,num_jobs,fsts.JOB.ark,trans.JOB.ark,ali.JOB.ark,pdf_counts} and log/.
set -euo pipefail
nj=4
cmd=${train_cmd:-esgd-queue}
beam=10
retry_beam=40
silence_weight=0.0
fmllr_update_type=full
help_message="Usage: $0 [options] <data-dir> <lang-dir> <src-exp-dir> <ali-dir>
e.g.: $0 --nj 4 data/train data/lang exp/tri3 exp/tri3_ali
Options:
  --nj <n>                  # parallel jobs (default: $nj)
  --cmd <cmd>               # job runner (default: \$train_cmd from cmd.sh)
  --beam <b>                # alignment beam (default: $beam)
  --retry-beam <b>          # beam of the retry after a failure (default: $retry_beam)
  --silence-weight <w>      # weight of silence frames in the fMLLR statistics (default: $silence_weight)
  --fmllr-update-type <t>   # full|diag|offset (default: $fmllr_update_type)"
. "$(dirname "$0")/parse_options.sh"
if [ $# -ne 4 ]; then echo "$help_message" >&2; exit 1; fi
data=$1
lang=$2
src=$3
dir=$4
for f in "$data/feats.scp" "$data/text" "$data/utt2spk" "$lang/L.fst" "$src/final.mdl"; do
  [ -f "$f" ] || { echo "$0: no such file: $f" >&2; exit 1; }
done
mkdir -p "$dir/log"
echo "$nj" > "$dir/num_jobs"
rm -f "$dir/pdf_counts"
cp -L "$src/final.mdl" "$dir/final.mdl"
for f in tree phones.txt final.mat; do [ -e "$src/$f" ] && cp -L "$src/$f" "$dir/$f"; done
$cmd JOB=1:"$nj" "$dir/log/compile_graphs.JOB.log" \
  esgd-align compile-graphs --nj "$nj" --job JOB --reuse-from "$src" "$data" "$lang" "$dir/final.mdl" "$dir"
echo "$0: aligning on speaker-independent features"
$cmd JOB=1:"$nj" "$dir/log/align_si.JOB.log" esgd-align align --nj "$nj" --job JOB --beam "$beam" \
  --retry-beam "$retry_beam" "$data" "$dir/final.mdl" "$dir"
echo "$0: estimating fMLLR transforms"
$cmd JOB=1:"$nj" "$dir/log/fmllr.JOB.log" esgd-fmllr est --nj "$nj" --job JOB --alignments "$dir" \
  --silence-weight "$silence_weight" --silence-phones "$lang/phones/silence.int" \
  --fmllr-update-type "$fmllr_update_type" "$data" "$dir/final.mdl" "$dir/trans.JOB.ark"
echo "$0: aligning on the adapted features"
$cmd JOB=1:"$nj" "$dir/log/align.JOB.log" esgd-align align --nj "$nj" --job JOB --beam "$beam" \
  --retry-beam "$retry_beam" --transforms "$dir/trans.JOB.ark" "$data" "$dir/final.mdl" "$dir"
$cmd "$dir/log/pdf_counts.log" esgd-align counts --nj "$nj" "$dir/final.mdl" "$dir"
failed=$(cat "$dir"/log/align.*.log | grep -c "not aligned:" || true)
echo "$0: aligned $data with $src/final.mdl and fMLLR into $dir ($failed utterances failed to align)"
