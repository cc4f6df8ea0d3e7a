"""Search spaces. A new space is one module in this package that registers one class.

Every space encodes an architecture as a vector of integer genes (gene ``i`` takes values
``0 .. choices[i] - 1``) and as a string users read, type and store (the CSV ``arch``
columns, ``--arch`` on the command line). Sampling, mutation and crossover work on the genes,
so a space only defines its encoding, its network, and its *blocks*: pieces whose predicted
latencies add up to the network's, which is what lets a latency oracle cache them (see
:mod:`edgelat.nas.oracle`).

Example:
    >>> space = get_space("nb201")
    >>> arch = space.sample(np.random.default_rng(0))
    >>> space.decode(space.encode(arch)) == arch
    True
"""

from edgelat.nas.spaces.base import SPACES, SearchSpace, get_space, list_spaces, register_space

__all__ = ["SPACES", "SearchSpace", "get_space", "list_spaces", "register_space"]

# A new space is one module in this package that registers one class, and its line here (declared by
# name, so listing the spaces imports none of them; the module is imported when the space is asked for).
SPACES.declare("fbnet", "edgelat.nas.spaces.fbnet")
SPACES.declare("nb201", "edgelat.nas.spaces.nb201")
SPACES.declare("ofa", "edgelat.nas.spaces.ofa")
