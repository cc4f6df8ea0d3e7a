from __future__ import annotations

NETS: list = []
