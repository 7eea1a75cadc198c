"""The population engine, the schedules that train it (SGD epochs, Kaldi's new-bob) and the algorithms on it:
ESGD, ESGD with anchors, Population Descent, OpenAI-ES."""
