#!/usr/bin/env bash
# Lattice decoding of a data dir with a hybrid DNN / BiLSTM (Kaldi's steps/nnet/decode.sh): pseudo
# log-likelihoods = log posteriors - log senone priors, scaled by --acwt, over the GMM system's HCLG. The model is
# <decode-dir>/../final.pt and its transition model <decode-dir>/../final.mdl (steps/train_nnet.sh puts both
# there). Writes <decode-dir>/lat.JOB.gz, timing.JOB, log/ and the real-time factor; then scores with
# steps/score.sh unless --skip-scoring true. The search runs at Kaldi's beam 13 and max-active 7000, at --acwt 0.2,
# near the best scoring LM weight of these models (about 5); at Kaldi's 0.1 the same accuracy needs a much slower
# search (bench/bench_nnet_decode.py).
set -euo pipefail
stage=0
nj=4
cmd=${decode_cmd:-esgd-queue}
beam=13.0
lattice_beam=6.0
max_active=7000
acwt=0.2
model=
trans_model=
ivectors=
pdf_counts=
batch_size=4096
device=cpu
skip_scoring=false
scoring_opts="--min-lmwt 2 --max-lmwt 12"
help_message="Usage: $0 [options] <graph-dir> <data-dir> <decode-dir>
e.g.: $0 --nj 4 exp/tri3/graph data/test_fmllr exp/dnn/decode_test
Options:
  --stage <n>              # 0: decode, then score; 1: score the lattices of an earlier complete decoding of
                           # the dir only (default: $stage)
  --nj <n>                 # parallel jobs, split by speaker (default: $nj)
  --cmd <cmd>              # job runner (default: \$decode_cmd from cmd.sh)
  --beam <b>               # decoding beam (default: $beam)
  --lattice-beam <b>       # lattice pruning beam (default: $lattice_beam)
  --max-active <n>         # most tokens kept per frame (default: $max_active)
  --acwt <w>               # acoustic scale of the pseudo log-likelihoods (default: $acwt)
  --model <file>           # hybrid model (default: <decode-dir>/../final.pt)
  --trans-model <mdl>      # GMM system's model with the transition model (default: <decode-dir>/../final.mdl)
  --ivectors <dir>         # online i-vectors of the data dir (for a BiLSTM trained with i-vectors)
  --pdf-counts <file>      # senone counts for the priors (default: those saved in the model)
  --batch-size <n>         # frames per network forward pass (default: $batch_size)
  --device <cpu|cuda>      # where the network runs (default: $device)
  --skip-scoring <bool>    # do not run steps/score.sh (default: $skip_scoring)
  --scoring-opts <opts>    # options for steps/score.sh (default: $scoring_opts)"
. "$(dirname "$0")/parse_options.sh"
if [ $# -ne 3 ]; then echo "$help_message" >&2; exit 1; fi
graph=$1
data=$2
dir=$3
[ -n "$model" ] || model=$(dirname "$dir")/final.pt
[ -n "$trans_model" ] || trans_model=$(dirname "$dir")/final.mdl
for f in "$graph/HCLG.fst" "$graph/words.txt" "$data/feats.scp" "$data/spk2utt" "$model" "$trans_model"; do
  [ -f "$f" ] || { echo "$0: no such file: $f" >&2; exit 1; }
done
[ -z "$ivectors" ] || [ -f "$ivectors/ivector_online.scp" ] || { echo "$0: no such file: $ivectors/ivector_online.scp" >&2; exit 1; }
nspk=$(wc -l < "$data/spk2utt")
[ "$nj" -le "$nspk" ] || nj=$nspk
mkdir -p "$dir/log"
. "$(dirname "$0")/libs/decoding.sh"
opts=(--beam "$beam" --lattice-beam "$lattice_beam" --max-active "$max_active" --acwt "$acwt"
      --batch-size "$batch_size" --device "$device")
[ -z "$ivectors" ] || opts+=(--ivectors "$ivectors")
[ -z "$pdf_counts" ] || opts+=(--pdf-counts "$pdf_counts")
if [ "$stage" -le 0 ]; then
  $cmd JOB=1:"$nj" "$dir/log/decode.JOB.log" esgd-decode-nnet --nj "$nj" --job JOB "${opts[@]}" \
    "$graph" "$data" "$model" "$trans_model" "$(staging_dir "$dir")"
  finish_decoding "$dir" "$nj" network
else
  check_decoded "$dir" "$model"
fi
if ! $skip_scoring; then
  "$(dirname "$0")/score.sh" --nj "$nj" --cmd "$cmd" $scoring_opts "$data" "$graph" "$dir"
fi
