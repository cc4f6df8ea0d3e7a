"""Kernel latency predictors and whole-network prediction (arrives with the predictors issue)."""
