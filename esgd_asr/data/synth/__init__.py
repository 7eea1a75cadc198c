"""Offline synthesis of the default corpus: fortunes text, espeak-ng speakers, sox perturbation."""
