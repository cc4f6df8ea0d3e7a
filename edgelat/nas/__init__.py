"""Latency-constrained search and pruning (arrives with the search issue)."""
