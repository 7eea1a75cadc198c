"""Lexicon, lang dir, n-gram LM, and the L/G/HCLG graphs built with kaldifst and kaldilm."""

# kaldi_hmm_gmm must be imported before kaldifst / kaldi_decoder, or the process hangs (shared findings).
import kaldi_hmm_gmm  # noqa: F401
