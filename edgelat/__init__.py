"""edgelat: hardware-aware latency prediction and device profiling.

The public API is what ``__all__`` lists; everything else is private and may change.
"""

from __future__ import annotations

__version__ = "0.1.0"

from edgelat.workspace import open_workspace

__all__ = ["__version__", "open_workspace"]
