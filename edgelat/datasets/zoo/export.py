"""The validation zoo (networks and resolutions) and ONNX export of zoo models and other modules."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from edgelat.datasets.zoo.registry import create_model
from edgelat.errors import UsageError

__all__ = ["VALIDATION_ZOO", "export_module_onnx", "export_onnx"]


# ---------------------------------------------------------------------------------------------
# Networks and input resolutions for validating whole-network latency predictions. Every family
# appears; light networks at 224 and 160 (some also at 128/96), heavy ones (VGG, DenseNet,
# ResNet-50) at 160 or lower so a CPU measurement stays quick.
VALIDATION_ZOO: list[tuple[str, int]] = [
    ("mobilenetv1_050", 160),
    ("mobilenetv1_050", 224),
    ("mobilenetv1_075", 192),
    ("mobilenetv1_100", 224),
    ("mobilenetv2_050", 160),
    ("mobilenetv2_075", 224),
    ("mobilenetv2_100", 160),
    ("mobilenetv2_100", 224),
    ("mobilenetv2_140", 224),
    ("mobilenetv3_small_075", 224),
    ("mobilenetv3_small_100", 160),
    ("mobilenetv3_small_100", 224),
    ("mobilenetv3_large_075", 224),
    ("mobilenetv3_large_100", 160),
    ("mobilenetv3_large_100", 224),
    ("resnet18", 160),
    ("resnet18", 224),
    ("resnet34", 160),
    ("resnet50", 128),
    ("resnet50", 160),
    ("squeezenet1_0", 224),
    ("squeezenet1_1", 160),
    ("squeezenet1_1", 224),
    ("shufflenetv2_050", 224),
    ("shufflenetv2_100", 160),
    ("shufflenetv2_100", 224),
    ("shufflenetv2_150", 224),
    ("mnasnet_050", 224),
    ("mnasnet_100", 160),
    ("mnasnet_100", 224),
    ("efficientnet_b0", 160),
    ("efficientnet_b0", 224),
    ("ghostnet_100", 160),
    ("ghostnet_100", 224),
    ("regnetx_002", 224),
    ("regnetx_004", 160),
    ("regnety_002", 224),
    ("regnety_004", 160),
    ("densenet121", 128),
    ("densenet121", 160),
    ("googlenet", 160),
    ("googlenet", 96),
    ("vgg11", 128),
    ("vgg11_bn", 160),
    ("proxylessnas_mobile", 160),
    ("proxylessnas_mobile", 224),
]


def export_onnx(name: str, resolution: int, path: str | Path, num_classes: int = 1000) -> Path:
    """Export zoo model ``name`` (random weights) at ``resolution`` to an ONNX file, static shapes."""
    from edgelat.datasets.store import check_output

    if resolution < 16:
        raise UsageError(f"--resolution {resolution} is too small: the zoo's networks need 16 pixels or more")
    check_output(Path(path), (".onnx",))
    model = create_model(name, num_classes=num_classes)
    try:
        return export_module_onnx(model, (1, 3, resolution, resolution), path)
    except RuntimeError as exc:  # a resolution the network's pooling cannot take
        raise UsageError(f"{name} cannot be exported at {resolution} px: {str(exc).splitlines()[0][:200]}") from None


def export_module_onnx(model: nn.Module, input_shape: Sequence[int], path: str | Path) -> Path:
    """Export ``model`` (eval mode) at ``input_shape`` to an ONNX file with static shapes."""
    import warnings

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.randn(*input_shape, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model.eval(), (example,), str(path), dynamo=False, input_names=["input"], output_names=["logits"])
    return path
