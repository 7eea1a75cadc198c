"""esgd-asr: Kaldi-style speech recognition recipes trained with population-based optimisation."""

__version__ = "0.1.0"
