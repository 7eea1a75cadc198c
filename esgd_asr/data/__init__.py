"""Kaldi data dirs, lhotse manifests, corpus preparation and synthesis, feature/alignment datasets."""
