"""Kaldi data dirs, lhotse manifests, corpus preparation and synthesis, the secondary recipes' images and LM text."""
