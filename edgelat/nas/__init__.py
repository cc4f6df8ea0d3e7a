"""Latency-constrained search and pruning: search spaces, proxies, latency oracles, search loops."""

from edgelat.nas.spaces import SearchSpace, get_space, list_spaces, register_space

__all__ = ["SearchSpace", "get_space", "list_spaces", "register_space"]
