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

# Networks' kernels are matched to the first kind that claims them, in registration order: the
# general data-movement kind (layout) comes after the specific ones (channel shuffle).
from edgelat.ops import conv, elementwise, linear, misc, pool, reduce, resize  # noqa: F401, I001  (registers the kinds)
from edgelat.ops import layout  # noqa: F401, E402
from edgelat.ops.lowering import FUSION_PIPELINE_VERSION, FusedGroup, TirCall, fuse, fused_groups, kernel_funcs, main_module
from edgelat.ops.registry import FEATURE_SCHEMA_VERSION, OPS, Config, OpSpec, config_id, get_op, list_ops, register_op, unregister_op

__all__ = [
    "FEATURE_SCHEMA_VERSION",
    "FUSION_PIPELINE_VERSION",
    "OPS",
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
    "main_module",
    "register_op",
    "unregister_op",
]
