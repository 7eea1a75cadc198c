"""Single-model training: the hybrid models with new-bob on the population engine (a population of one), and the
secondary recipes' tasks."""
