"""esgd-asr: Kaldi-style speech recognition recipes trained with population-based optimisation."""

# kaldi_hmm_gmm must be imported before kaldifst / kaldi_decoder, or the process hangs (see findings).
import kaldi_hmm_gmm  # noqa: F401

__version__ = "0.1.0"
