#!/usr/bin/env bash
# esgd-asr recipe: from audio to WER, Kaldi style. Run from this directory: ./run.sh [options]
set -euo pipefail
cd "$(dirname "$0")"

stage=1
stop_stage=100
nj=$(nproc)
corpus=synth
corpus_dir=
feats=plp
synth_config=conf/synth.conf
device=cpu
ubm_gauss=256
ivector_dim=100
mono_gauss=1000   # GMM systems' sizes (stages 8-11): Gaussians of mono, leaves / Gaussians of tri1-3
tri1_leaves=1500
tri1_gauss=8000
tri2_leaves=2000
tri2_gauss=10000
tri3_leaves=2000
tri3_gauss=10000
nnet_gmm=tri3   # the GMM system whose senones, alignments and graph the hybrid DNN / BiLSTM use
esgd_jobs=2     # population runs of stages 14-15 at a time, one thread each
seed=0          # of every random draw of stages 7-15: the same seed, the same models
force=false
help_message="Usage: ./run.sh [options]
Runs the recipe's stages in order. A finished stage is skipped while all it reads is unchanged: the options
and conf files it reads and the outputs of the earlier stages it reads (a line names what changed); --force
redoes it anyway. Each stage's wall time goes into exp/.stages/ and the final table.
Options:
  --stage <n>          # first stage to run (default: $stage)
  --stop-stage <n>     # last stage to run (default: $stop_stage)
  --nj <n>             # parallel jobs (default: $nj, the number of cores)
  --corpus <name>      # synth (default; synthesised offline), kaldi:<dir with train/dev/test data dirs>,
                       # librispeech or switchboard (these two need --corpus-dir)
  --corpus-dir <dir>   # where a librispeech / switchboard corpus lies
  --feats <plp|kaldi>  # features of stage 6: PLP computed here (default), or with --corpus kaldi:<dir> the data
                       # dirs' own feats.scp / cmvn.scp (compressed matrices too), used as they are
  --synth-config <f>   # sizes of the synthesised corpus (default: $synth_config)
  --device <cpu|cuda>  # where torch stages (i-vectors, neural models) run (default: $device)
  --ubm-gauss <n>      # Gaussians of the i-vector UBM (default: $ubm_gauss)
  --ivector-dim <n>    # i-vector dimension (default: $ivector_dim)
  --nnet-gmm <sys>     # GMM system of the hybrid models: mono (PLP + CMVN input) or tri3 (fMLLR input,
                       # data/*_fmllr) (default: $nnet_gmm)
  --esgd-jobs <n>      # population runs of stages 14-15 at a time, one thread each (default: $esgd_jobs)
  --seed <n>           # seed of the random draws of the models: i-vector UBM and extractor, GMM systems (equal
                       # alignment, phone clustering, mixing up), single networks (initialisation, shuffling),
                       # population runs (default: $seed); the corpus has its own (--seed of --synth-config)
  --mono-gauss <n>     # Gaussians of the monophone system (default: $mono_gauss)
  --tri1-leaves <n>    # tree leaves (senones) / Gaussians of tri1 (deltas) (default: $tri1_leaves / $tri1_gauss),
  --tri1-gauss <n>     #   tri2 (LDA+MLLT) ($tri2_leaves / $tri2_gauss) and tri3 (SAT) ($tri3_leaves / $tri3_gauss);
  --tri2-leaves <n>    #   schedules in conf/{mono,tri1,tri2,tri3}.conf, trees in conf/tree.conf, LDA in
  --tri2-gauss <n>     #   conf/lda.conf, decoding in conf/decode.conf
  --tri3-leaves <n>
  --tri3-gauss <n>
  --force              # redo stages even if they finished before
Stages:
  1  data        corpus -> lhotse manifests (data/manifests) + Kaldi data dirs data/{train,dev,test}, and
                 data/heldout (test sentences, voices never used in train/dev/test) where the corpus has it
  2  validate    check the data dirs (sorting, keys, audio, transcripts)
  3  dict        lexicon for all words (CMUdict + espeak-ng G2P) -> data/local/dict
  4  lang        lang dir (phones, words, topo, L.fst, L_disambig.fst) -> data/lang
  5  lm          3-gram Kneser-Ney LM on train text (dev perplexity) + G.fst -> data/lang_test
  6  plp         PLP features (Kaldi compute-plp-feats semantics) + per-speaker CMVN stats -> data/*/feats.scp
                 (--feats kaldi: the kaldi: corpus' own features and CMVN stats instead, no PLP)
  7  ivector     diagonal UBM + i-vector extractor on train; online i-vectors of every set
                 -> exp/ivectors_<set>/ivector_online.scp; speaker EER of dev, test (and heldout)
  8  mono        monophone GMM-HMM (flat start); HCLG; decode dev, test (and heldout); align train -> exp/mono, exp/mono_ali
  9  tri1        triphones on deltas (decision tree); HCLG; decode; align train -> exp/tri1, exp/tri1_ali
  10 tri2        triphones on LDA+MLLT features (9 spliced frames -> 40 dims); HCLG; decode; align
                 -> exp/tri2, exp/tri2_ali
  11 tri3        speaker-adaptive training (fMLLR); HCLG; two-pass fMLLR decoding of the eval sets; train and dev
                 aligned with fMLLR; speaker-adapted LDA features -> exp/tri3, exp/tri3_ali (senones, pdf_counts),
                 exp/tri3_ali_dev, data/<set>_fmllr
  12 dnn         hybrid DNN (9 spliced frames) on the --nnet-gmm system's senones, new-bob SGD; dev aligned for
                 the validation CE; decode the eval sets -> exp/dnn (final.pt, history.tsv, decode_*/best_wer)
  13 blstm       hybrid BiLSTM (21-frame chunks, features + 100-dim online i-vectors), likewise -> exp/blstm
  14 esgd_dnn    the ESGD papers' Table 1 on the DNN (conf/esgd.yaml), every from-scratch row on one per-member
                 budget (K x Ks + Kf epochs): the single DNN on that budget, population baseline, ESGD without
                 evolution, ESGD; ESGD with anchors on the single DNN of stage 12 and on the ESGD model, iterated
                 anchors from the better of the two; the control: the single DNN fine-tuned on the anchored runs'
                 budget; decode test -> exp/dnn_{budget,ft},
                 exp/esgd_dnn_{population,no_evolution,esgd,anchored,anchored_esgd,iterated}
  15 esgd_blstm  likewise on the BiLSTM -> exp/esgd_blstm_*, exp/blstm_ft
After the last stage the results table is printed (local/show_results.sh)."
. ./steps/parse_options.sh
if [ $# -gt 0 ]; then echo "$0: unexpected argument '$1' (see --help)" >&2; exit 1; fi
last_stage=15
[[ "$seed" =~ ^[0-9]+$ ]] || { echo "$0: --seed must be a non-negative integer, got '$seed'" >&2; exit 1; }
for opt in stage stop_stage ubm_gauss ivector_dim mono_gauss tri1_leaves tri1_gauss tri2_leaves tri2_gauss tri3_leaves \
           tri3_gauss esgd_jobs; do
  [[ "${!opt}" =~ ^[1-9][0-9]*$ ]] && continue
  echo "$0: --${opt//_/-} must be a positive integer, got '${!opt}'" >&2; exit 1
done
[ "$stage" -le "$last_stage" ] || { echo "$0: --stage $stage: there are stages 1 to $last_stage" >&2; exit 1; }
[ "$stop_stage" -ge "$stage" ] || { echo "$0: --stop-stage $stop_stage is before --stage $stage" >&2; exit 1; }
case "$device" in cpu|cuda) ;; *) echo "$0: --device must be cpu or cuda, got '$device'" >&2; exit 1 ;; esac
case "$nnet_gmm" in mono|tri3) ;; *) echo "$0: --nnet-gmm must be mono or tri3, got '$nnet_gmm'" >&2; exit 1 ;; esac
case "$feats" in
  plp) ;;
  kaldi)
    if [[ "$corpus" != kaldi:* ]]; then
      echo "$0: --feats kaldi needs --corpus kaldi:<dir> (its data dirs' feats.scp)" >&2; exit 1
    fi ;;
  *) echo "$0: --feats must be plp or kaldi, got '$feats'" >&2; exit 1 ;;
esac
case "$corpus" in
  synth) ;;
  kaldi:*) [ -d "${corpus#kaldi:}" ] || { echo "$0: --corpus $corpus: no such directory" >&2; exit 1; } ;;
  librispeech|switchboard) [ -d "$corpus_dir" ] || { echo "$0: --corpus $corpus needs --corpus-dir <dir>" >&2; exit 1; } ;;
  *) echo "$0: unknown --corpus '$corpus' (synth, kaldi:<dir>, librispeech, switchboard)" >&2; exit 1 ;;
esac

# one run at a time in this recipe dir: a second run.sh (or one started while an orphaned job of a stopped run
# still holds the lock) stops naming the holder's pid
mkdir -p exp
exec 9<> exp/.run.lock
if ! flock -n 9; then
  echo "$0: exp/ is being written by another run (pid $(cat exp/.run.lock)); wait for it or stop it" >&2; exit 1
fi
echo "$$" > exp/.run.lock

local/bootstrap.sh
. ./path.sh
. ./cmd.sh

corpus_inputs="corpus corpus_dir"  # what stage 1 reads: the corpus' options and, for the default one, its config
if [ "$corpus" = synth ]; then
  [ -f "$synth_config" ] || { echo "$0: --synth-config: no such file: $synth_config" >&2; exit 1; }
  corpus_inputs+=" $synth_config"
fi
# Stage functions run inside `if`, where `set -e` does not apply: each failing command returns explicitly.
# run_stage N NAME INPUTS COMMAND...: run one stage with a banner unless it is outside --stage..--stop-stage, or
# finished before (marker exp/.stages/N.NAME) with the same signature and --force is not given. INPUTS lists what
# the stage reads: run.sh options (their variable names, e.g. tri1_leaves), files (paths; by content) and the
# stages whose outputs it reads (numbers; by their markers, which change whenever such a stage reruns). Not inputs:
# --nj, --device, --esgd-jobs (how a stage runs, not what it makes). The signature is one key=value line per input
# and the command; the marker adds the stage's wall time. A stage that finished before with other inputs reruns
# with one line naming them, which changes its marker and so reruns the stages that read it in turn. While it
# runs, N.NAME.running holds its signature: a stage stopped before with the same signature continues where its
# steps can (stage_resume=true). A stage that fails keeps every marker but its own, and that one too if it wrote
# only logs.
declare -A stage_names=()
run_stage() {
  local n=$1 name=$2 inputs=$3; shift 3
  stage_names[$n]=$name
  if [ "$n" -lt "$stage" ] || [ "$n" -gt "$stop_stage" ]; then return 0; fi
  local marker=exp/.stages/$n.$name signature changed start
  signature=$(stage_signature "$inputs" "$@") || exit 1
  if [ -f "$marker" ] && ! $force; then
    changed=$(changed_inputs "$marker" <<< "$signature")
    [ -n "$changed" ] || { echo "== stage $n: $name: finished before, skipped (--force to redo)"; return 0; }
    echo "stage $n ($name): $changed, re-running"
  fi
  echo "== stage $n: $name ($(date '+%H:%M:%S'))"
  stage_resume=false
  if ! $force && [ -f "$marker.running" ] && [ "$(cat "$marker.running")" = "$signature" ]; then stage_resume=true; fi
  mkdir -p exp/.stages && echo "$signature" > "$marker.running"
  start=$EPOCHREALTIME
  if ! "$@"; then
    if wrote_outputs_since "$marker.running"; then rm -f "$marker"; fi
    echo "$0: stage $n ($name) failed" >&2; exit 1
  fi
  { echo "$signature"
    echo "wall_seconds=$(awk -v s="$start" -v e="$EPOCHREALTIME" 'BEGIN { printf "%.1f", e - s }')"
    echo "finished=$(date '+%Y-%m-%d %H:%M:%S.%N')"
  } > "$marker.tmp" && mv "$marker.tmp" "$marker" && rm -f "$marker.running"
}
# stage_signature INPUTS COMMAND...: the key=value lines of run_stage's signature
stage_signature() {
  local x marker
  for x in $1; do
    if [[ "$x" =~ ^[0-9]+$ ]]; then
      [ -n "${stage_names[$x]:-}" ] || { echo "$0: stage input $x is not an earlier stage" >&2; return 1; }
      marker=exp/.stages/$x.${stage_names[$x]}
      echo "stage $x (${stage_names[$x]})=$( [ -f "$marker" ] && sha1sum < "$marker" | cut -c1-12 || echo none)"
    elif [[ "$x" =~ ^[a-z][a-z0-9_]*$ ]] && [ -n "${!x+set}" ]; then
      echo "--${x//_/-}=${!x}"
    else
      echo "$x=$( [ -f "$x" ] && sha1sum < "$x" | cut -c1-12 || echo absent)"
    fi
  done
  shift; echo "command=$*"
}
# changed_inputs MARKER < SIGNATURE: why the signature differs from the marker's, in words (empty: it does not)
changed_inputs() {
  awk 'NR == FNR { i = index($0, "="); if (i) old[substr($0, 1, i - 1)] = substr($0, i + 1); next }
       { i = index($0, "="); key = substr($0, 1, i - 1); value = substr($0, i + 1)
         if (key in old && old[key] == value) next
         if (!("command" in old)) { legacy = 1; next }
         if (key ~ /^stage /) stages = stages "; " (!(key in old) ? "it now reads " key : \
                                                    key (value == "none" ? " has not finished" : " reran"))
         else if (key == "command") command = "; its command changed"
         else changed = changed (changed == "" ? "" : ", ") key }
       END { if (legacy) { print "its marker does not record its inputs"; exit }
             if (changed != "") changed = changed " changed"
             out = changed stages command; sub(/^; /, "", out); print out }' "$1" -
}
# wrote_outputs_since FILE: whether a file other than a log or lock was written under data/, exp/, plp/ or corpus/
# after FILE
wrote_outputs_since() {
  local roots=() d
  for d in data exp plp corpus; do [ ! -d "$d" ] || roots+=("$d"); done
  [ -n "$(find "${roots[@]}" -type f -newer "$1" ! -path '*/log/*' ! -path 'exp/.stages/*' ! -name .lock -print \
    -quit)" ]
}

stage_data() {
  if [ "$corpus" = synth ]; then
    local/make_synth_corpus.sh --nj "$nj" --cmd "$train_cmd" --synth-config "$synth_config" \
      corpus/synth data/manifests data
  else
    local/prepare_corpus.sh --nj "$nj" --cmd "$train_cmd" --corpus "$corpus" ${corpus_dir:+--corpus-dir "$corpus_dir"} \
      data/manifests data
  fi
}
# the sets decoded by every system: dev, test and, where the corpus has one (the default does), the held-out set:
# the test sentences read by voices that train/dev/test never use
eval_sets() {
  echo dev test
  if [ -f data/heldout/utt2spk ]; then echo heldout; fi
}
stage_validate() {
  local x
  for x in train $(eval_sets); do steps/validate_data_dir.sh --cmd "$train_cmd" "data/$x" || return 1; done
}
stage_lm() {
  local/train_lm.sh --cmd "$train_cmd" data/train data/dev data/local/lm || return 1
  steps/format_lm.sh --cmd "$train_cmd" data/lang data/local/lm/lm.arpa data/lang_test
}
# feats_inputs: what stage 6 reads besides stage 1: conf/plp.conf (the signature of the stage before --feats), or
# --feats and the kaldi: corpus' own tables
feats_inputs() {
  local x
  if [ "$feats" = plp ]; then echo conf/plp.conf; return; fi
  echo feats
  for x in train dev test heldout; do
    [ -f "${corpus#kaldi:}/$x/feats.scp" ] && echo "${corpus#kaldi:}/$x/feats.scp" "${corpus#kaldi:}/$x/cmvn.scp"
  done
  return 0
}
stage_plp() {
  local x
  for x in train $(eval_sets); do
    if [ "$feats" = kaldi ]; then
      steps/import_feats.sh --cmd "$train_cmd" "${corpus#kaldi:}/$x" "data/$x" "exp/make_plp/$x" || return 1
    else
      steps/make_plp.sh --nj "$nj" --cmd "$train_cmd" "data/$x" "exp/make_plp/$x" plp || return 1
    fi
    if [ "$feats" = plp ] || [ ! -f "data/$x/cmvn.scp" ]; then
      steps/compute_cmvn_stats.sh --cmd "$train_cmd" "data/$x" "exp/make_plp/$x" plp || return 1
    fi
    steps/validate_data_dir.sh --audio false --cmd "$train_cmd" "data/$x" || return 1
  done
}
# newest_pass DIR SUFFIX: N of the newest DIR/N.SUFFIX (a trainer's model after N passes), if any
newest_pass() {
  ls "$1" 2>/dev/null | sed -n "s/^\([0-9][0-9]*\)\.$2\$/\1/p" | sort -n | tail -n 1
}
stage_ivector() {
  local ubm_stage=-1 ie_stage=-1 n
  if $stage_resume; then  # a stopped stage continues each trainer from its newest model
    n=$(newest_pass exp/diag_ubm dubm)
    [ -n "$n" ] && ubm_stage=$n
    n=$(newest_pass exp/ivector_extractor ie)
    # an extractor begun on the final UBM of the stopped run (not an older one's)
    [ -n "$n" ] && [ exp/ivector_extractor/$n.ie -nt exp/diag_ubm/final.dubm ] && ie_stage=$n
  fi
  if [ ! -f exp/diag_ubm/final.dubm ] || [ "$ie_stage" -lt 0 ]; then
    steps/train_diag_ubm.sh --cmd "$train_cmd" --device "$device" --seed "$seed" --stage "$ubm_stage" data/train \
      "$ubm_gauss" exp/diag_ubm || return 1
  fi
  steps/train_ivector_extractor.sh --cmd "$train_cmd" --device "$device" --seed "$seed" --ivector-dim "$ivector_dim" \
    --stage "$ie_stage" data/train exp/diag_ubm exp/ivector_extractor || return 1
  local x
  for x in train $(eval_sets); do
    steps/extract_ivectors.sh --nj "$nj" --cmd "$train_cmd" --device "$device" "data/$x" exp/ivector_extractor \
      "exp/ivectors_$x" || return 1
  done
  for x in $(eval_sets); do esgd-ivector-eer "data/$x" "exp/ivectors_$x" || return 1; done
}

# decode_config SYSTEM: the decoding config of a GMM system: its own beams (conf/decode_SYSTEM.conf) where it has
# them, else conf/decode.conf
decode_config() {
  if [ -f "conf/decode_$1.conf" ]; then echo "conf/decode_$1.conf"; else echo conf/decode.conf; fi
}
# gmm_resume DIR FIRST: the --stage that continues the GMM trainer of DIR where a stopped run of this stage (with
# the same --nj) left it: the pass of its last complete N.mdl, when N >= FIRST (1 for the monophones, whose 1.mdl
# ends pass 0; 2 for the triphones, whose 1.mdl comes before their set-up ends); nothing for a fresh start
gmm_resume() {
  $stage_resume && [ "$(cat "$1/num_jobs" 2>/dev/null)" = "$nj" ] || return 0
  local last
  last=$(newest_pass "$1" mdl)
  if [ -n "$last" ] && [ "$last" -ge "$2" ]; then echo "--stage $last"; fi
}
# decode_resume DIR MODEL: how a stopped stage continues its decoding into DIR: "done" when DIR's best_wer is newer
# than MODEL, "--stage 1" (score only) when its lattices are (num_jobs, written once all are in), else nothing
decode_resume() {
  $stage_resume || return 0
  if [ "$1/best_wer" -nt "$2" ]; then echo done
  elif [ "$1/num_jobs" -nt "$2" ]; then echo "--stage 1"
  fi
}
gmm_graph_decode() {  # gmm_graph_decode SYSTEM [fmllr]: HCLG of exp/SYSTEM, then decode the eval sets
  local sys=$1 decode=steps/decode.sh config x resume
  [ "${2:-}" = fmllr ] && decode=steps/decode_fmllr.sh
  config=$(decode_config "$sys")
  if ! $stage_resume || [ ! "exp/$sys/graph/HCLG.fst" -nt "exp/$sys/final.mdl" ]; then
    steps/mkgraph.sh --cmd "$train_cmd" data/lang_test "exp/$sys" "exp/$sys/graph" || return 1
  fi
  for x in $(eval_sets); do
    resume=$(decode_resume "exp/$sys/decode_$x" "exp/$sys/final.mdl")
    [ "$resume" = done ] && continue
    "$decode" --config "$config" --nj "$nj" --cmd "$decode_cmd" $resume "exp/$sys/graph" "data/$x" \
      "exp/$sys/decode_$x" || return 1
  done
}
stage_mono() {
  steps/train_mono.sh --config conf/mono.conf $(gmm_resume exp/mono 1) --seed "$seed" --totgauss "$mono_gauss" \
    --nj "$nj" --cmd "$train_cmd" data/train data/lang exp/mono || return 1
  gmm_graph_decode mono || return 1
  steps/align_si.sh --nj "$nj" --cmd "$train_cmd" data/train data/lang exp/mono exp/mono_ali
}
stage_tri1() {
  steps/train_deltas.sh --config conf/tri1.conf $(gmm_resume exp/tri1 2) --seed "$seed" --nj "$nj" \
    --cmd "$train_cmd" "$tri1_leaves" "$tri1_gauss" data/train data/lang exp/mono_ali exp/tri1 || return 1
  gmm_graph_decode tri1 || return 1
  steps/align_si.sh --nj "$nj" --cmd "$train_cmd" data/train data/lang exp/tri1 exp/tri1_ali
}
stage_tri2() {
  steps/train_lda_mllt.sh --config conf/tri2.conf $(gmm_resume exp/tri2 2) --seed "$seed" --nj "$nj" \
    --cmd "$train_cmd" "$tri2_leaves" "$tri2_gauss" data/train data/lang exp/tri1_ali exp/tri2 || return 1
  gmm_graph_decode tri2 || return 1
  steps/align_si.sh --nj "$nj" --cmd "$train_cmd" data/train data/lang exp/tri2 exp/tri2_ali
}
stage_tri3() {
  steps/train_sat.sh --config conf/tri3.conf $(gmm_resume exp/tri3 2) --seed "$seed" --nj "$nj" \
    --cmd "$train_cmd" "$tri3_leaves" "$tri3_gauss" data/train data/lang exp/tri2_ali exp/tri3 || return 1
  gmm_graph_decode tri3 fmllr || return 1
  steps/align_fmllr.sh --nj "$nj" --cmd "$train_cmd" data/train data/lang exp/tri3 exp/tri3_ali || return 1
  steps/align_fmllr.sh --nj "$nj" --cmd "$train_cmd" data/dev data/lang exp/tri3 exp/tri3_ali_dev || return 1
  # the hybrid models' input: train with its alignment transforms, the eval sets with their decoding transforms
  local x trans
  for x in train $(eval_sets); do
    trans=exp/tri3/decode_$x; [ "$x" = train ] && trans=exp/tri3_ali
    steps/make_fmllr_feats.sh --nj "$nj" --cmd "$train_cmd" "data/${x}_fmllr" "data/$x" exp/tri3/final.mdl \
      "$trans" "exp/make_fmllr/$x" || return 1
  done
}
stage_nnet() {  # stage_nnet TYPE: hybrid TYPE (dnn, blstm) on the senones of exp/$nnet_gmm; decode the eval sets
  local type=$1 gmm=$nnet_gmm feats= cmvn=false x resume
  case "$gmm" in
    mono) cmvn=true ;;  # PLP features as the monophone system sees them: per-speaker CMVN
    *) feats=_fmllr ;;  # speaker-adapted LDA features of the SAT system
  esac
  local train_opts=() decode_opts=()
  if [ "$type" = blstm ]; then
    train_opts=(--train-ivectors exp/ivectors_train --valid-ivectors exp/ivectors_dev)
  fi
  # validation targets: dev aligned by the same system (stage 11 aligns it for tri3, with fMLLR; the monophone
  # system's is made here, again whenever the system is newer than the alignment)
  if [ "$gmm" = mono ] && [ ! "exp/mono_ali_dev/pdf_counts" -nt exp/mono/final.mdl ]; then
    steps/align_si.sh --nj "$nj" --cmd "$train_cmd" data/dev data/lang exp/mono exp/mono_ali_dev || return 1
  fi
  # a stage stopped before continues from the checkpoint of its last epoch
  steps/train_nnet.sh --cmd "$train_cmd" --model-type "$type" --device "$device" --cmvn "$cmvn" "${train_opts[@]}" \
    --seed "$seed" --resume "$stage_resume" "data/train$feats" "exp/${gmm}_ali" "data/dev$feats" "exp/${gmm}_ali_dev" \
    "exp/$type" || return 1
  for x in $(eval_sets); do
    resume=$(decode_resume "exp/$type/decode_$x" "exp/$type/final.pt")
    [ "$resume" = done ] && continue
    [ "$type" = blstm ] && decode_opts=(--ivectors "exp/ivectors_$x")
    steps/decode_nnet.sh --nj "$nj" --cmd "$decode_cmd" --device "$device" $resume "${decode_opts[@]}" \
      "exp/$gmm/graph" "data/$x$feats" "exp/$type/decode_$x" || return 1
  done
}

# esgd_epochs PRESET: the per-member SGD budget of conf/esgd.yaml preset(s) for the single-model runs:
# K x Ks + Kf epochs, their size (epoch_frames, 0: whole), the fine-tune's learning rate and mini-batch
esgd_epochs() { esgd-recipe-query budget "$1"; }
# better_anchor DIR...: the final.pt of the run whose best model has the lowest fitness (the CE selection used)
better_anchor() { esgd-recipe-query better-anchor "$@"; }
# error_line LOG: the line of a failed job's log that says what went wrong (as esgd-queue reports it)
error_line() { esgd-recipe-query error-line "$1"; }
esgd_dir() {  # esgd_dir TYPE NAME: the exp dir of a Table 1 system
  case "$2" in budget|ft) echo "exp/$1_$2" ;; *) echo "exp/esgd_$1_$2" ;; esac
}
esgd_log() {  # esgd_log train|decode: stage_esgd's log of a Table 1 system's job (the steps write log/train.log)
  case "$1" in train) echo run.log ;; *) echo decode.log ;; esac
}
esgd_train() {  # esgd_train TYPE GMM NAME: train one Table 1 system of stage_esgd
  local type=$1 gmm=$2 name=$3 feats= cmvn=false dir epochs frames lr batch model extra=
  # the BiLSTM's mini-batches in chunks of about the DNN's frames (preset blstm_batches of conf/esgd.yaml)
  [ "$type" = dnn ] || extra=,blstm_batches
  case "$gmm" in mono) cmvn=true ;; *) feats=_fmllr ;; esac
  local data=("data/train$feats" "exp/${gmm}_ali" "data/dev$feats" "exp/${gmm}_ali_dev") opts=() esgd=()
  # the same stage stopped before is continued from the runs' checkpoints (run_stage's stage_resume)
  opts=(--cmd "$train_cmd" --model-type "$type" --device "$device" --cmvn "$cmvn" --num-threads 1
        --resume "$stage_resume" --seed "$seed")
  [ "$type" = dnn ] || opts+=(--train-ivectors exp/ivectors_train --valid-ivectors exp/ivectors_dev)
  esgd=(--egs "exp/esgd_${type}_egs/egs.pt")
  dir=$(esgd_dir "$type" "$name")
  case "$name" in
    budget)  # the single baseline of Table 1: new-bob on the populations' per-member budget (K x Ks + Kf epochs)
      read -r epochs frames lr batch < <(esgd_epochs "default$extra") || return 1
      [ "$frames" = 0 ] || opts+=(--epoch-frames "$frames")
      steps/train_nnet.sh "${opts[@]}" --max-epochs "$epochs" --batch-size "$batch" "${data[@]}" "$dir" || return 1 ;;
    ft)  # the control of the anchored rows: the anchor fine-tuned with new-bob on the anchored runs' extra budget
      read -r epochs frames lr batch < <(esgd_epochs "anchors$extra") || return 1
      [ "$frames" = 0 ] || opts+=(--epoch-frames "$frames")
      steps/finetune.sh "${opts[@]}" --lr "$lr" --epochs "$epochs" --batch-size "$batch" "exp/$type" "${data[@]}" \
        "$dir" || return 1 ;;
    anchored)  # anchored on the single SGD baseline (the converged model of stage 12/13)
      steps/train_esgd.sh "${opts[@]}" "${esgd[@]}" --algorithm anchored --esgd-preset "anchors$extra" \
        --anchor "exp/$type/final.pt" "${data[@]}" "$dir" || return 1 ;;
    anchored_esgd)  # anchored on the ESGD baseline ("we use the SGD baseline and ESGD baseline as the initial anchors")
      steps/train_esgd.sh "${opts[@]}" "${esgd[@]}" --algorithm anchored --esgd-preset "anchors$extra" \
        --anchor "exp/esgd_${type}_esgd/final.pt" "${data[@]}" "$dir" || return 1 ;;
    iterated)  # iterated anchors, continuing from the better anchored run's final anchor
      model=$(better_anchor "exp/esgd_${type}_anchored" "exp/esgd_${type}_anchored_esgd") || return 1
      echo "$0: iterated anchors continue from $model"
      steps/train_esgd.sh "${opts[@]}" "${esgd[@]}" --algorithm iterated --esgd-preset "iterated$extra" \
        --anchor "$model" "${data[@]}" "$dir" || return 1 ;;
    *)
      steps/train_esgd.sh "${opts[@]}" "${esgd[@]}" --algorithm "${name//_/-}" --esgd-preset "default$extra" \
        "${data[@]}" "$dir" || return 1 ;;
  esac
}
esgd_decode() {  # esgd_decode TYPE GMM NAME: decode the eval sets but dev with a Table 1 system of esgd_train
  local type=$1 gmm=$2 dir feats=
  dir=$(esgd_dir "$type" "$3")
  case "$gmm" in mono) ;; *) feats=_fmllr ;; esac
  # every Table 1 row at the GMM systems' search settings (conf/decode.conf: beam 11, max-active 2000, lattice beam
  # 4) instead of stage 12's 13 / 7000 / 6: the stage 12 DNN decodes test at 23.28 % WER instead of 22.54, at about
  # half the search time; the other models of the top quarter (top/rank<r>.pt, mu >= 8) are decoded on test too,
  # for the WER range
  local decode_opts=(--nj 1 --cmd "$decode_cmd" --device "$device" --beam 11 --max-active 2000 --lattice-beam 4)
  local top rank x
  for x in $(eval_sets); do
    [ "$x" != dev ] || continue
    decode_set "$x" "$dir/final.pt" "$dir/decode_$x" || return 1
  done
  for top in "$dir"/top/rank*.pt; do
    [ -f "$top" ] || continue
    rank=$(basename "$top" .pt)
    decode_set test "$top" "$dir/decode_test_$rank" || return 1
  done
}
decode_set() {  # decode_set SET MODEL DIR, with esgd_decode's type, gmm, feats and decode_opts
  local ivectors=()
  [ "$type" = dnn ] || ivectors=(--ivectors "exp/ivectors_$1")
  steps/decode_nnet.sh "${decode_opts[@]}" "${ivectors[@]}" --model "$2" "exp/$gmm/graph" "data/$1$feats" "$3"
}
# stage_esgd TYPE: the ESGD papers' Table 1 systems on hybrid TYPE. Up to --esgd-jobs jobs run at a time (one thread
# each). A system's training starts once the trainings it needs have finished (anchored_esgd waits for esgd, iterated
# for both anchored runs), the anchored chain first; its decoding is queued when its training ends, behind every
# training that can start, so decoding never holds up the chain of dependent trainings. The first training writes
# the shared tensors (exp/esgd_TYPE_egs/egs.pt) before a second job starts.
stage_esgd() {
  local type=$1 gmm=$nnet_gmm job kind name need dir pid ready failed=0 log
  [ -f "exp/$type/final.pt" ] || { echo "$0: no exp/$type/final.pt (stage $([ "$type" = dnn ] && echo 12 || echo 13)) to anchor the population" >&2; return 1; }
  local pending=(train/esgd:- train/anchored:- train/anchored_esgd:esgd train/iterated:anchored,anchored_esgd
                 train/population:- train/no_evolution:- train/budget:- train/ft:-) waiting needs
  local -A running=() trained=()
  # the shared tensors of an earlier run of this stage may be of other alignments: made again unless it continues
  $stage_resume || rm -f "exp/esgd_${type}_egs/egs.pt"
  while :; do
    for pid in "${!running[@]}"; do
      ! kill -0 "$pid" 2>/dev/null || continue
      job=${running[$pid]}; unset "running[$pid]"
      kind=${job%%/*} name=${job#*/}; dir=$(esgd_dir "$type" "$name"); log=$dir/log/$(esgd_log "$kind")
      if ! wait "$pid"; then
        failed=1; echo "$0: $dir failed: $(error_line "$log") [log: $log]" >&2
      elif [ "$kind" = train ]; then
        trained[$name]=1; pending+=("decode/$name:-")
        echo "$0: $dir: $(grep -h 'final.pt' "$log" | tail -n 1)"
      else
        echo "$0: $dir: test $(cat "$dir/decode_test/best_wer")"
      fi
    done
    [ "$failed" = 0 ] || pending=()
    waiting=()
    for job in "${pending[@]}"; do
      kind=${job%%/*} name=${job%%:*} name=${name#*/} ready=true
      IFS=, read -ra needs <<< "${job#*:}"
      for need in "${needs[@]}"; do [ "$need" = - ] || [ -n "${trained[$need]:-}" ] || ready=false; done
      [ "${#running[@]}" = 0 ] || [ -f "exp/esgd_${type}_egs/egs.pt" ] || ready=false
      if $ready && [ "${#running[@]}" -lt "$esgd_jobs" ]; then
        dir=$(esgd_dir "$type" "$name"); log=$dir/log/$(esgd_log "$kind")
        mkdir -p "$dir/log"
        echo "$0: $dir: $kind (log: $log)"
        "esgd_$kind" "$type" "$gmm" "$name" > "$log" 2>&1 &
        running[$!]=$kind/$name
      else
        waiting+=("$job")
      fi
    done
    pending=("${waiting[@]}")
    [ "${#running[@]}" -gt 0 ] || break
    sleep 5
  done
  [ "$failed" = 0 ] || return 1
  [ "${#pending[@]}" = 0 ] || { echo "$0: stage $type Table 1: could not start ${pending[*]}" >&2; return 1; }
}

stage_dict() {
  local x dirs=(data/train)
  for x in $(eval_sets); do dirs+=("data/$x"); done
  local/prepare_dict.sh --cmd "$train_cmd" data/local/dict "${dirs[@]}"
}
stage_lang() { steps/prepare_lang.sh --cmd "$train_cmd" data/local/dict "<unk>" data/lang; }

gmm_stage=$([ "$nnet_gmm" = mono ] && echo 8 || echo 11)  # the stage of the hybrid models' GMM system
# run_stage N NAME INPUTS COMMAND: INPUTS are the options, config files and earlier stages the stage reads
run_stage 1 data "$corpus_inputs" stage_data
run_stage 2 validate "1" stage_validate
run_stage 3 dict "1" stage_dict
run_stage 4 lang "3" stage_lang
run_stage 5 lm "1 4" stage_lm
run_stage 6 plp "$(feats_inputs | tr '\n' ' ')1" stage_plp
run_stage 7 ivector "ubm_gauss ivector_dim seed conf/ivector.conf 6" stage_ivector
run_stage 8 mono "mono_gauss seed conf/mono.conf $(decode_config mono) 4 5 6" stage_mono
run_stage 9 tri1 "tri1_leaves tri1_gauss seed conf/tri1.conf conf/tree.conf $(decode_config tri1) 4 5 6 8" stage_tri1
run_stage 10 tri2 "tri2_leaves tri2_gauss seed conf/tri2.conf conf/lda.conf conf/tree.conf $(decode_config tri2)
                  4 5 6 9" stage_tri2
run_stage 11 tri3 "tri3_leaves tri3_gauss seed conf/tri3.conf conf/tree.conf $(decode_config tri3) 4 5 6 10" stage_tri3
run_stage 12 dnn "nnet_gmm seed conf/dnn.yaml 4 6 $gmm_stage" stage_nnet dnn
run_stage 13 blstm "nnet_gmm seed conf/blstm.yaml 4 6 7 $gmm_stage" stage_nnet blstm
run_stage 14 esgd_dnn "nnet_gmm seed conf/esgd.yaml conf/dnn.yaml 6 12 $gmm_stage" stage_esgd dnn
run_stage 15 esgd_blstm "nnet_gmm seed conf/esgd.yaml conf/blstm.yaml 6 7 13 $gmm_stage" stage_esgd blstm

local/show_results.sh
