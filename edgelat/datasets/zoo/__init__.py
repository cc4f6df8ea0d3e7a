"""A registry of classic ImageNet CNNs as plain torch modules (random init, no pretrained weights).

The zoo gives the latency predictors whole networks to be validated on: every model is built
from ``torch.nn`` modules only, takes ``num_classes`` and pools globally with
``AdaptiveAvgPool2d(1)`` before its classifier, so any input resolution >= 32 works and
``torch.export`` / ``torch.onnx.export`` produce static-shape graphs.

Names follow timm: a width multiplier is a three-digit suffix (``mobilenetv2_140`` is 1.4x).

Architectures follow the papers and torchvision/pycls (layer counts, widths, strides, BatchNorm);
parameter counts equal the published ones. Deliberate differences:

* Dropout and stochastic depth are omitted (training-only; they vanish from exported graphs).
* ``vgg11``/``vgg11_bn`` pool to 1x1 and use 512-4096-4096 fully connected layers instead of
  torchvision's 7x7 pooling (25088 inputs to the first FC): 7x7 adaptive pooling of a non-7x7
  map cannot be exported to ONNX.
* ``googlenet`` has BatchNorm (as torchvision) and the paper's 5x5 convolution in the third
  Inception branch (torchvision uses 3x3 there); no auxiliary heads.
* ``mobilenetv1_*`` use ReLU as in the paper (TensorFlow's reference uses ReLU6).
* ``mobilenetv3_*_075`` keep the 1280/1024-wide last layer, as the papers and TensorFlow do for
  multipliers below 1 (torchvision would thin it too).
* ``proxylessnas_mobile`` leaves out the two blocks of the searched net whose op is "zero"
  (they are identities).

The package: ``registry`` (register, list, create), ``blocks`` (shared building blocks), ``models``
(the families; a new family goes there), ``export`` (the validation zoo, ONNX export).

Example:
    >>> from edgelat.datasets.zoo import create_model, example_input
    >>> model = create_model("mobilenetv2_100", num_classes=10).eval()
    >>> model(example_input(224)).shape
    torch.Size([1, 10])
"""

from edgelat.datasets.zoo import models as _models  # noqa: F401 - the families register themselves
from edgelat.datasets.zoo.blocks import ChannelShuffle, InvertedResidual, SqueezeExcite, conv_bn, make_divisible
from edgelat.datasets.zoo.export import VALIDATION_ZOO, export_module_onnx, export_onnx
from edgelat.datasets.zoo.registry import MODELS, create_model, example_input, init_weights, list_models, register_model

__all__ = [
    "MODELS",
    "VALIDATION_ZOO",
    "ChannelShuffle",
    "InvertedResidual",
    "SqueezeExcite",
    "conv_bn",
    "create_model",
    "example_input",
    "export_module_onnx",
    "export_onnx",
    "init_weights",
    "list_models",
    "make_divisible",
    "register_model",
]
