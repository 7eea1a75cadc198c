"""Single-model training: cross-entropy, new-bob learning-rate halving with back-off, fine-tune."""
