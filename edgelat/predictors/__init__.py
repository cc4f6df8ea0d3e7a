"""Kernel latency predictors and whole-network prediction."""

__all__ = ["FALLBACK"]

# The name the fallback model (every kernel, generic features) is saved and reported under.
FALLBACK = "fallback"
