"""Lexicon, lang dir, n-gram LM, and the L/G/HCLG graphs built with kaldifst and kaldilm."""
