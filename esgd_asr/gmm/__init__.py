"""GMM-HMM training and alignment on kaldi-hmm-gmm; decision-tree state tying."""
