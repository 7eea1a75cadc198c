#!/usr/bin/env bash
# Synthesise the default corpus offline (espeak-ng speakers, sox channel effects, Debian fortunes text)
# and write lhotse manifests plus Kaldi data dirs <data-root>/{train,dev,test}.
set -euo pipefail
nj=$(nproc)
cmd=${train_cmd:-esgd-queue}
synth_config=conf/synth.conf
help_message="Usage: $0 [options] <corpus-dir> <manifest-dir> <data-root>
e.g.: $0 --nj 8 corpus/synth data/manifests data
Options:
  --synth-config <file>   # corpus sizes and channel settings (default: $synth_config)
  --nj <n>                # synthesis processes (default: $nj)
  --cmd <cmd>             # job runner (default: \$train_cmd from cmd.sh)"
. "$(dirname "$0")/../steps/parse_options.sh"
if [ $# -ne 3 ]; then echo "$help_message" >&2; exit 1; fi
[ -f "$synth_config" ] || { echo "$0: --synth-config: no such file: $synth_config" >&2; exit 1; }
$cmd exp/make_synth_corpus/log/make_synth_corpus.log \
  esgd-make-synth-corpus --config "$synth_config" --nj "$nj" "$1" "$2" "$3"
