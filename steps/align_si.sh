#!/usr/bin/env bash
# Align a data dir with a trained GMM-HMM system (Kaldi's steps/align_si.sh): training graphs from the
# transcripts, Viterbi alignment with the source system's final.mdl, frames per pdf (senone counts for priors).
# Writes <ali-dir>/{final.mdl,tree,phones.txt,num_jobs,fsts.JOB.ark,ali.JOB.ark,pdf_counts} and log/.
set -euo pipefail
nj=4
cmd=${train_cmd:-esgd-queue}
beam=10
retry_beam=40
help_message="Usage: $0 [options] <data-dir> <lang-dir> <src-exp-dir> <ali-dir>
e.g.: $0 --nj 4 data/train data/lang exp/mono exp/mono_ali
Options:
  --nj <n>           # parallel jobs (default: $nj)
  --cmd <cmd>        # job runner (default: \$train_cmd from cmd.sh)
  --beam <b>         # alignment beam (default: $beam)
  --retry-beam <b>   # beam of the retry after a failure (default: $retry_beam)"
. "$(dirname "$0")/parse_options.sh"
if [ $# -ne 4 ]; then echo "$help_message" >&2; exit 1; fi
data=$1
lang=$2
src=$3
dir=$4
for f in "$data/feats.scp" "$data/text" "$lang/L.fst" "$src/final.mdl"; do
  [ -f "$f" ] || { echo "$0: no such file: $f" >&2; exit 1; }
done
mkdir -p "$dir/log"
echo "$nj" > "$dir/num_jobs"
rm -f "$dir/pdf_counts"
cp -L "$src/final.mdl" "$dir/final.mdl"
for f in tree phones.txt; do [ -f "$src/$f" ] && cp "$src/$f" "$dir/$f"; done
$cmd JOB=1:"$nj" "$dir/log/compile_graphs.JOB.log" \
  esgd-align compile-graphs --nj "$nj" --job JOB --reuse-from "$src" "$data" "$lang" "$dir/final.mdl" "$dir"
$cmd JOB=1:"$nj" "$dir/log/align.JOB.log" esgd-align align --nj "$nj" --job JOB --beam "$beam" \
  --retry-beam "$retry_beam" "$data" "$dir/final.mdl" "$dir"
$cmd "$dir/log/pdf_counts.log" esgd-align counts --nj "$nj" "$dir/final.mdl" "$dir"
failed=$(cat "$dir"/log/align.*.log | grep -c "not aligned:" || true)
echo "$0: aligned $data with $src/final.mdl into $dir ($failed utterances failed to align)"
