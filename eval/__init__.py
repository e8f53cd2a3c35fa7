"""Evaluation of log-analyzer: the golden incident corpus and the tools around it."""
