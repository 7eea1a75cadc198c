"""Hybrid decoding (posteriors / priors), lattice decoding and WER scoring."""
