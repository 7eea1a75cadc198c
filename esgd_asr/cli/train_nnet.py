"""Train a hybrid DNN or BiLSTM on a GMM system's senone alignments: the single-model new-bob baseline.

Usage: esgd-train-nnet [--nnet-config conf/dnn.yaml] [--model-type dnn|blstm] [--preset default]
                       [--model-opt key=value ...] [--lr F] [--batch-size N] [--max-epochs N] [--min-lr F]
                       [--cmvn true|false] [--train-ivectors DIR --valid-ivectors DIR] [--init-model PATH]
                       [--seed 0] [--device cpu|cuda] [--resume true|false]
                       <train-data> <train-ali> <valid-data> <valid-ali> <exp-dir>

The model shape comes from --nnet-config (`default` or `presets.<preset>`, then --model-opt), its input width and
senone count from the data (esgd_asr.hybrid.prepare.prepare_hybrid_sets); the schedule from the config's `train`
section, then --lr/--batch-size/--max-epochs/--min-lr/--halving-factor. Plain SGD, new-bob: after an epoch
whose validation CE rose, back off to the previous weights and halve the lr (esgd_asr.train.nnet). Writes
<exp-dir>/checkpoint.pt after every epoch, history.tsv, tensorboard/, training.png and, when done, final.pt.
--init-model starts from an existing model (ours or TorchScript, checked like an anchor) instead of a random one.
"""
from __future__ import annotations

import logging

import kaldi_hmm_gmm  # noqa: F401  (before kaldifst: import-order trap)
import torch

from esgd_asr.cli.options import KaldiArgumentParser, add_device_option, override_option, parse_bool
from esgd_asr.errors import EsgdError, cli_main
from esgd_asr.hybrid.model_file import config_kind, load_anchor
from esgd_asr.hybrid.prepare import network_input, prepare_hybrid_sets
from esgd_asr.models.config import build_model, load_model_config
from esgd_asr.population.newbob import load_newbob_config
from esgd_asr.train.nnet import train_nnet

log = logging.getLogger("esgd-train-nnet")


def build_parser() -> KaldiArgumentParser:
    parser = KaldiArgumentParser(prog="esgd-train-nnet", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nnet-config", help="model YAML (default: conf/<model-type>.yaml)")
    parser.add_argument("--model-type", choices=["dnn", "blstm"], help="must match the config's type")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--model-opt", type=override_option, action="append", default=[],
                        help="override a model config field, e.g. --model-opt hidden=[512,512]")
    for name, kind in [("lr", float), ("batch-size", int), ("max-epochs", int), ("min-lr", float),
                       ("halving-factor", float), ("epoch-frames", int)]:
        parser.add_argument(f"--{name}", type=kind, help="(default: the config's train section)")
    parser.add_argument("--cmvn", type=parse_bool, default=False, help="per-speaker CMVN from cmvn.scp")
    parser.add_argument("--norm-vars", type=parse_bool, default=False)
    parser.add_argument("--delta-order", type=int, default=0)
    parser.add_argument("--train-ivectors", help="i-vector dir of the training set (ivector_online.scp)")
    parser.add_argument("--valid-ivectors", help="i-vector dir of the validation set")
    parser.add_argument("--init-model", help="start from this model instead of a random initialisation")
    parser.add_argument("--seed", type=int, default=0)
    add_device_option(parser)
    parser.add_argument("--num-threads", type=int, default=1,
                        help="torch threads (0: torch's default; more threads spin badly on a loaded machine)")
    parser.add_argument("--resume", type=parse_bool, default=False, help="continue from <exp-dir>/checkpoint.pt")
    parser.add_argument("--tensorboard", type=parse_bool, default=True)
    for name in ("train_data", "train_ali", "valid_data", "valid_ali", "exp_dir"):
        parser.add_argument(name)
    return parser


@cli_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    nnet_config = args.nnet_config or f"conf/{args.model_type or 'dnn'}.yaml"
    config = load_model_config(nnet_config, args.preset, **dict(args.model_opt))
    if args.model_type and config_kind(config) != args.model_type:
        raise EsgdError(f"--model-type {args.model_type}, but {nnet_config} describes a {config_kind(config)}")
    newbob = load_newbob_config(nnet_config, args.preset, lr=args.lr, batch_size=args.batch_size,
                                max_epochs=args.max_epochs, min_lr=args.min_lr, halving_factor=args.halving_factor,
                                epoch_frames=args.epoch_frames)
    config, nnet_input = network_input(config, args.train_data, args.train_ali, args.train_ivectors, args.cmvn,
                                       args.norm_vars, args.delta_order, args.init_model)
    sets = prepare_hybrid_sets(config, args.train_data, args.train_ali, args.valid_data, args.valid_ali,
                               args.train_ivectors, args.valid_ivectors, nnet_input=nnet_input)
    config = sets.fit_config(config)
    if args.init_model:
        model = load_anchor(args.init_model, config, sets.nnet_input)
    else:
        torch.manual_seed(args.seed)
        model = build_model(config)
    log.info("%s: %s, %d parameters; new-bob %s", config_kind(config), config,
             sum(p.numel() for p in model.parameters()), newbob)
    train_nnet(model, config, sets, newbob, args.exp_dir, args.seed, args.device, args.resume,
               tensorboard=args.tensorboard)


if __name__ == "__main__":
    main()
