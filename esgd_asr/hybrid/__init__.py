"""Hybrid (DNN-HMM) acoustic models: their input from a data dir's features, GMM alignments as senone
targets, the prepared training sets, and the model files."""
