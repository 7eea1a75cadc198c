"""GMM-HMM training and alignment on kaldi-hmm-gmm; decision-tree state tying."""

# kaldi_hmm_gmm must be imported before kaldifst / kaldi_decoder, or the process hangs (shared findings).
import kaldi_hmm_gmm  # noqa: F401
