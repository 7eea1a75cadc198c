"""The population engine and the algorithms on it: ESGD, ESGD with anchors, Population Descent, OpenAI-ES."""
