#!/usr/bin/env bash
# Flat-start monophone GMM-HMM training (Kaldi's steps/train_mono.sh): flat model from the data's global
# mean/variance, training graphs from the transcripts, equal alignment, then EM passes with Viterbi realignment on
# a schedule and Gaussian splitting up to --totgauss. Writes <exp-dir>/{0..N}.mdl, final.mdl, tree, phones.txt,
# fsts.JOB.ark + fsts_tids.JOB.ark (training graphs), ali.JOB.ark (alignments of the last realignment), log/objf.tsv (log-likelihood
# per frame of every pass) and one log per job under log/. --stage continues a stopped run
# (steps/libs/resume.sh).
set -euo pipefail
stage=-3
nj=4
cmd=${train_cmd:-esgd-queue}
totgauss=1000
num_iters=40
max_iter_inc=30
power=0.25
seed=0
realign_iters="1 2 3 4 5 6 7 8 9 10 12 14 16 18 20 23 26 29 32 35 38"
retry_beam=40
help_message="Usage: $0 [options] <data-dir> <lang-dir> <exp-dir>
e.g.: $0 --nj 4 data/train data/lang exp/mono
The data dir needs feats.scp and text (cmvn.scp is used when present: per-speaker mean normalisation).
Options:
  --stage <n>            # continue a stopped run from this step: -3 init, -2 training graphs, -1 equal alignment,
                         # 0 first estimate, N >= 1 pass N from the stopped run's N.mdl (default: $stage, afresh)
  --nj <n>               # parallel jobs (default: $nj)
  --cmd <cmd>            # job runner (default: \$train_cmd from cmd.sh)
  --totgauss <n>         # target number of Gaussians (default: $totgauss)
  --num-iters <n>        # EM passes (default: $num_iters)
  --max-iter-inc <n>     # last pass that adds Gaussians (default: $max_iter_inc)
  --power <p>            # exponent of occupancy when allotting Gaussians (default: $power)
  --seed <n>             # seed of the equal alignment and the mixing-up perturbations (default: $seed)
  --realign-iters <list> # passes preceded by realignment (default: \"$realign_iters\")
  --retry-beam <b>       # beam of the retry when the alignment beam (6, then 10) fails (default: $retry_beam)"
. "$(dirname "$0")/parse_options.sh"
if [ $# -ne 3 ]; then echo "$help_message" >&2; exit 1; fi
data=$1
lang=$2
dir=$3
for f in "$data/feats.scp" "$data/text" "$lang/L.fst" "$lang/topo" "$lang/phones/sets.int" "$lang/words.txt"; do
  [ -f "$f" ] || { echo "$0: no such file: $f" >&2; exit 1; }
done
mkdir -p "$dir/log"
. "$(dirname "$0")/libs/resume.sh"
start_or_resume -3
rm -f "$dir/final.mdl"  # the dir stops claiming a finished model until this run completes

if [ "$stage" -le -3 ]; then
  echo "$0: initialising the monophone system"
  $cmd "$dir/log/init.log" esgd-train-mono init "$data" "$lang" "$dir"
fi
if [ "$stage" -le -2 ]; then
  $cmd JOB=1:"$nj" "$dir/log/compile_graphs.JOB.log" \
    esgd-align compile-graphs --nj "$nj" --job JOB "$data" "$lang" "$dir/0.mdl" "$dir"
fi
if [ "$stage" -le -1 ]; then
  echo "$0: aligning the data equally (pass 0)"
  $cmd JOB=1:"$nj" "$dir/log/align.0.JOB.log" esgd-align align --equal --seed "$seed" --nj "$nj" --job JOB "$data" \
    "$dir/0.mdl" "$dir"
fi
numgauss=$(esgd-gmm-train info "$dir/0.mdl" | awk '$1 == "number-of-gaussians" {print $2}')
incgauss=$(( (totgauss - numgauss) / max_iter_inc ))
[ "$incgauss" -ge 0 ] || incgauss=0
if [ "$stage" -le 0 ]; then
  $cmd JOB=1:"$nj" "$dir/log/acc.0.JOB.log" esgd-gmm-train acc --nj "$nj" --job JOB "$data" "$dir" 0
  $cmd "$dir/log/update.0.log" esgd-gmm-train est --nj "$nj" --min-gaussian-occupancy 3 --mix-up "$numgauss" \
    --power "$power" --seed "$seed" --realigned true "$dir" 0
fi

beam=6  # 10 after the first realignment, as in Kaldi
x=1
while [ "$x" -lt "$num_iters" ]; do
  realigned=false
  if echo " $realign_iters " | grep -q " $x "; then realigned=true; fi
  if [ "$stage" -le "$x" ]; then
    echo "$0: pass $x"
    # realignment (gmm-align-compiled) and accumulation run in one job
    $cmd JOB=1:"$nj" "$dir/log/acc.$x.JOB.log" esgd-gmm-train acc --nj "$nj" --job JOB --realign "$realigned" \
      --beam "$beam" --retry-beam "$retry_beam" "$data" "$dir" "$x"
    $cmd "$dir/log/update.$x.log" esgd-gmm-train est --nj "$nj" --mix-up "$numgauss" --power "$power" \
      --seed "$seed" --realigned "$realigned" "$dir" "$x"
  fi
  $realigned && beam=10
  [ "$x" -le "$max_iter_inc" ] && numgauss=$((numgauss + incgauss))
  x=$((x + 1))
done
(cd "$dir" && ln -sf "$x.mdl" final.mdl)

failed=$(cat "$dir"/log/align.*.log "$dir"/log/acc.*.log | grep -c "not aligned:" || true)
echo "$0: done: $dir/final.mdl; $(tail -n 1 "$dir/log/objf.tsv" | awk '{print "last pass log-likelihood per frame " $3 ", " $5 " Gaussians"}'); $failed alignment failures over all passes (see $dir/log/align.*.log)"
