#!/usr/bin/env bash
# Decoding graph HCLG = H o C o L_disambig o G of a GMM-HMM system (Kaldi's utils/mkgraph.sh), input labels
# transition-ids. Writes <graph-dir>/{HCLG.fst,words.txt,phones.txt,phones/,disambig_tid.int,num_pdfs}.
set -euo pipefail
cmd=${train_cmd:-esgd-queue}
transition_scale=1.0
self_loop_scale=0.1
help_message="Usage: $0 [options] <lang-test-dir> <exp-dir> <graph-dir>
e.g.: $0 data/lang_test exp/mono exp/mono/graph
Options:
  --transition-scale <s>   # scale of transition log-probs in the graph (default: $transition_scale)
  --self-loop-scale <s>    # scale of self-loop log-probs (default: $self_loop_scale)
  --cmd <cmd>              # job runner (default: \$train_cmd from cmd.sh)"
. "$(dirname "$0")/parse_options.sh"
if [ $# -ne 3 ]; then echo "$help_message" >&2; exit 1; fi
lang=$1
exp=$2
graph=$3
for f in "$lang/G.fst" "$lang/L_disambig.fst" "$lang/words.txt" "$exp/final.mdl"; do
  [ -f "$f" ] || { echo "$0: no such file: $f" >&2; exit 1; }
done
mkdir -p "$exp/log"
$cmd "$exp/log/mkgraph_$(basename "$graph").log" esgd-mkgraph --transition-scale "$transition_scale" \
  --self-loop-scale "$self_loop_scale" "$lang" "$exp/final.mdl" "$graph"
