"""The zoo's registry: register a model family's constructors, list them, create one with fresh weights."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from torch import nn

from edgelat.errors import UsageError
from edgelat.registry import Registry

__all__ = ["MODELS", "ModelFn", "create_model", "example_input", "init_weights", "list_models", "register_model"]

ModelFn = Callable[..., nn.Module]
Act = Callable[[], nn.Module]

MODELS: Registry[ModelFn] = Registry("model", hint="`edgelat zoo list` shows the models", sort=True)


def register_model(fn: ModelFn) -> ModelFn:
    """Register a model constructor under its function name (a decorator).

    The constructor must accept ``num_classes`` as a keyword argument.
    """
    name = fn.__name__
    if "num_classes" not in inspect.signature(fn).parameters:
        raise ValueError(f"model constructor {name!r} must take num_classes")
    return MODELS.register(name, fn)


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of the registered models that match an fnmatch ``pattern``.

    Example:
        >>> list_models("resnet*")
        ['resnet18', 'resnet34', 'resnet50']
    """
    return MODELS.names(pattern)


def create_model(name: str, **kwargs: object) -> nn.Module:
    """Build a registered model with freshly initialised weights (see :func:`init_weights`).

    Args:
        name: a name from :func:`list_models`.
        **kwargs: passed to the constructor; every model takes ``num_classes`` (default 1000).

    Raises:
        UsageError: unknown name (close matches are listed) or an argument the model does not take.

    Example:
        >>> create_model("resnet18", num_classes=10)(example_input(64)).shape
        torch.Size([1, 10])
    """
    fn = MODELS.get(name)
    try:
        inspect.signature(fn).bind(**kwargs)
    except TypeError as exc:
        raise UsageError(f"model {name!r}: {exc}") from None
    model = fn(**kwargs)
    init_weights(model)
    return model


def init_weights(model: nn.Module) -> nn.Module:
    """Initialise ``model`` in place and return it.

    Conv: Kaiming normal over the fan-in, BatchNorm: weight 1 bias 0, Linear: N(0, 0.01), biases 0.
    Unlike torchvision's fan-out mode (which ignores groups and so shrinks every depthwise
    conv's output, to ~1e-18 by the end of MobileNetV1), this keeps activations at a sane
    scale in eval mode, so latency is never measured on vanishing or denormal values.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
    return model


def example_input(resolution: int, batch: int = 1) -> torch.Tensor:
    """A deterministic ``batch x 3 x resolution x resolution`` float32 input."""
    if resolution < 32 or batch < 1:
        raise UsageError(f"example_input needs resolution >= 32 and batch >= 1, got {resolution} and {batch}")
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, 3, resolution, resolution, generator=generator)
