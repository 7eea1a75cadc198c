"""Acoustic and language models as plain nn.Modules."""
