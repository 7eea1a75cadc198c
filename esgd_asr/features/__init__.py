"""Acoustic front end: PLP, CMVN, deltas, splicing, LDA/MLLT/fMLLR, i-vectors."""
