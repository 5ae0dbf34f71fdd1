"""Evaluation protocols."""

from ppl_jax.evaluation.matching import matched_error, MatchResult
