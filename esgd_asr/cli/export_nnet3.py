"""Write a hybrid DNN of ours, or a population's model of an imported nnet3 architecture (TDNN, TDNN-F, ...), as a
Kaldi nnet3 text model, for Kaldi's nnet3 tools (nnet3-copy to binary, nnet3-latgen-faster) or as an anchor / model
elsewhere.

Usage: esgd-export-nnet3 <model> <nnet3-text-out>

<model> is a hybrid model file of ours (final.pt of esgd-train-nnet or esgd-train-esgd) of type dnn without
i-vectors. The global normalisation of its network input is folded into the first affine layer, so the written
model reads the front end's features as they are; per-speaker CMVN and deltas, where the model was trained with
them, stay outside (Kaldi: apply-cmvn, add-deltas), as the log says. A model of an nnet3 architecture (or an
nnet3 text model itself) is written with its own graph and input nodes (features, i-vectors): it never had
normalisation of ours. esgd-decode-nnet and --anchor read the file back (esgd_asr.models.kaldi_nnet3) to the same
outputs.
"""
from __future__ import annotations

import logging

from esgd_asr.atomic import atomic_write_text
from esgd_asr.cli.options import KaldiArgumentParser
from esgd_asr.errors import EsgdError, cli_main
from esgd_asr.hybrid.model_file import load_hybrid_model
from esgd_asr.models.dnn import DNNConfig
from esgd_asr.models.kaldi_nnet3 import Nnet3Network, nnet3_dnn_text, nnet3_network_text

log = logging.getLogger("esgd-export-nnet3")


@cli_main
def main(argv=None):
    parser = KaldiArgumentParser(prog="esgd-export-nnet3", description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("out")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    model = load_hybrid_model(args.model)
    if isinstance(model.module, Nnet3Network):
        atomic_write_text(args.out, nnet3_network_text(model.module))
        log.info("wrote %s: an nnet3 network of input context %d/%d, %d outputs", args.out,
                 model.module.left_context, model.module.right_context, model.module.output_dim)
        return
    if not isinstance(model.config, DNNConfig) or model.nnet_input is None:
        raise EsgdError(f"{args.model}: only DNN and nnet3-architecture model files of ours (with their nnet "
                        f"input) or nnet3 text models export to nnet3")
    if model.nnet_input.get("ivector_period"):
        raise EsgdError(f"{args.model}: a DNN on i-vectors at every spliced frame has no nnet3 form here")
    front_end = [name for name in ("cmvn", "delta_order") if model.nnet_input.get(name)]
    if front_end:
        log.warning("%s: trained with %s, which the nnet3 model does not hold: its input must have them applied "
                    "(apply-cmvn / add-deltas)", args.model, " and ".join(front_end))
    atomic_write_text(args.out, nnet3_dnn_text(model.config, model.module, model.nnet_input.get("global_stats", ())))
    log.info("wrote %s: %s", args.out, model.config)


if __name__ == "__main__":
    main()
