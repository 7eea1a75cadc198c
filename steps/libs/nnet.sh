# The checks and set-up shared by the neural trainers (train_nnet.sh, train_esgd.sh), sourced after their option
# parsing; reads their settings $model_type $nnet_config $train $train_ali $valid $valid_ali $train_ivectors
# $valid_ivectors $dir.

# prepare_nnet_dir [MORE_FILES...]: refuse a bad --model-type or a missing input (the data dirs' features, the
# alignments' model, the i-vectors, MORE_FILES), default --nnet-config to conf/<model-type>.yaml, then make
# <dir>/log (the trainer drops the old checkpoint unless --resume, and final.pt, once it has read its inputs).
prepare_nnet_dir() {
  case "$model_type" in
    dnn|blstm) ;;
    *) echo "$0: --model-type must be dnn or blstm, got '$model_type'" >&2; exit 1 ;;
  esac
  [ -n "$nnet_config" ] || nnet_config=conf/$model_type.yaml
  local f d
  for f in "$nnet_config" "$train/feats.scp" "$valid/feats.scp" "$train_ali/final.mdl" "$valid_ali/final.mdl" \
           "$@"; do
    [ -f "$f" ] || { echo "$0: no such file: $f" >&2; exit 1; }
  done
  for d in $train_ivectors $valid_ivectors; do
    [ -f "$d/ivector_online.scp" ] || { echo "$0: no such file: $d/ivector_online.scp" >&2; exit 1; }
  done
  mkdir -p "$dir/log"
}
