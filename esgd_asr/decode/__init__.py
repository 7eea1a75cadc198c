"""Hybrid decoding (posteriors / priors), lattice decoding and WER scoring."""

# kaldi_hmm_gmm must be imported before kaldifst / kaldi_decoder, or the process hangs (shared findings).
import kaldi_hmm_gmm  # noqa: F401
