#!/usr/bin/env bash
# Prepare an existing corpus through lhotse: lhotse manifests plus Kaldi data dirs <data-root>/{train,dev,test}.
set -euo pipefail
nj=$(nproc)
cmd=${train_cmd:-esgd-queue}
corpus=
corpus_dir=
sample_rate=16000
resample=false
help_message="Usage: $0 --corpus <kaldi:DIR|librispeech|switchboard> [options] <manifest-dir> <data-root>
  kaldi:DIR     DIR/{train,dev,test} are Kaldi data dirs (imported through lhotse, re-exported sorted)
  librispeech   --corpus-dir holds LibriSpeech (train-*, dev-clean, test-clean)
  switchboard   --corpus-dir holds swb1/ (LDC97S62 + transcripts) and eval2000/ (test)
Options:
  --corpus-dir <dir>     # corpus root for librispeech / switchboard
  --sample-rate <hz>     # sampling rate of a kaldi: corpus (default: $sample_rate)
  --resample <bool>      # a kaldi: corpus at another rate: resampled by sox, not refused (default: $resample)
  --nj <n>               # parallel jobs for lhotse (default: $nj)
  --cmd <cmd>            # job runner (default: \$train_cmd from cmd.sh)"
. "$(dirname "$0")/../steps/parse_options.sh"
if [ $# -ne 2 ] || [ -z "$corpus" ]; then echo "$help_message" >&2; exit 1; fi
opts=(--corpus "$corpus" --sample-rate "$sample_rate" --resample "$resample" --nj "$nj")
[ -z "$corpus_dir" ] || opts+=(--corpus-dir "$corpus_dir")
$cmd exp/prepare_corpus/log/prepare_corpus.log esgd-import-corpus "${opts[@]}" "$1" "$2"
