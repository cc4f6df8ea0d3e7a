"""edgelat: hardware-aware latency prediction and device profiling.

The public API is what ``__all__`` lists; everything else is private and may change.
"""

from __future__ import annotations

__version__ = "0.1.0"

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgelat.workspace import open_workspace

if TYPE_CHECKING:
    from edgelat.predictors.predict import Prediction

__all__ = ["__version__", "open_workspace", "predict", "predict_many"]


def predict(
    model: Any, device: str, *, input_shape: Any = None, recipe: str | None = None, workspace: str | Path | None = None,
    strict: bool = False,
) -> Prediction:  # fmt: skip
    """Predicted latency of a network on a device, with its per-kernel breakdown.

    ``model`` is an ONNX path or a ``torch.nn.Module`` (then give ``input_shape``). ``input_shape``
    is one shape, one per input in order, or (ONNX) a dict of shapes by input name; an ONNX file
    with fixed shapes needs none. Kernels no kind's model covers are priced by the device's
    fallback model and flagged (``Prediction.coverage``); ``strict=True`` refuses them instead.

    Example:
        >>> import edgelat
        >>> p = edgelat.predict("mobilenetv2.onnx", device="local")  # doctest: +SKIP
        >>> p.total_ms, p.kernels[0].op  # doctest: +SKIP
    """
    from edgelat.predictors.predict import predict_network

    with open_workspace(workspace) as ws:
        return predict_network(ws, device, model, input_shape=input_shape, recipe=recipe, strict=strict)


def predict_many(
    models: Sequence[Any],
    device: str,
    *,
    input_shape: Any = None,
    recipe: str | None = None,
    workspace: str | Path | None = None,
) -> list[Prediction]:
    """:func:`predict` for many networks, loading the device's models once."""
    from edgelat.ops.network import network_kernels
    from edgelat.predictors.predict import load_model, load_network, predict_kernels

    with open_workspace(workspace) as ws:
        latency_model = load_model(ws, device, recipe)
    return [predict_kernels(latency_model, network_kernels(load_network(m, input_shape))) for m in models]
