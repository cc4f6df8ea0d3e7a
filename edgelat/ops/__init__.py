"""The operator registry: every kernel kind edgelat profiles and predicts, one place each.

Importing this package registers the built-in kinds. A new kind is one decorated class in
one of the modules here (or your own module)::

    @register_op("my_op")
    class MyOp(OpSpec):
        params = (...)
        def sample(self, rng, seeds): ...
        def emit(self, cfg): ...
        def features(self, cfg): ...
        def match(self, group): ...
"""

from edgelat.ops import conv, elementwise, layout, linear, misc, pool, reduce, resize  # noqa: F401  (registers the kinds)
from edgelat.ops.lowering import FUSION_PIPELINE_VERSION, FusedGroup, TirCall, fuse, fused_groups, kernel_funcs
from edgelat.ops.registry import FEATURE_SCHEMA_VERSION, Config, OpSpec, config_id, get_op, list_ops, register_op, unregister_op

__all__ = [
    "FEATURE_SCHEMA_VERSION",
    "FUSION_PIPELINE_VERSION",
    "Config",
    "FusedGroup",
    "OpSpec",
    "TirCall",
    "config_id",
    "fuse",
    "fused_groups",
    "get_op",
    "kernel_funcs",
    "list_ops",
    "register_op",
    "unregister_op",
]
