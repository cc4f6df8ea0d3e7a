"""ONNX files as exporters write them, into Relax with every shape static.

What exporters produce is not what TVM's importer wants: ``torch.onnx.export`` (both the
TorchScript and the dynamo exporter) computes reshape sizes, pads and split points at run time
from ``Shape``/``Gather``/``Concat`` chains, and leaves batch or spatial dims as symbols. So an
ONNX file goes through four steps here:

1. **read and check** (:func:`load_onnx`): a file that is not an ONNX model is one clear error;
2. **bind the inputs** (:func:`bind_input_shapes`): every graph input gets a static shape, from
   the file where it is fixed, else from the user (``--input-shape``), checked against it;
3. **fold shape arithmetic** with onnxslim, so those chains become constants and every tensor
   has a static shape (onnxslim is pure Python, maintained, and folds shape arithmetic with its
   own symbolic shape inference; onnx-simplifier needs a native build that lags Python releases);
4. **import** with TVM's ONNX frontend, after ops it lacks are expanded where ONNX defines them as
   functions of simpler ops and exporters' spellings it misreads are normalised; a node it cannot
   convert is named, with its op type and input shapes.

Every failure is an :class:`~edgelat.errors.ModelImportError` with one line of evidence.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgelat.errors import ModelImportError

__all__ = ["InputSpec", "ShapeArg", "bind_input_shapes", "graph_inputs", "import_onnx", "load_onnx", "simplify"]

# What users pass as input shapes: one shape (a network with one input), one per input in order,
# or a shape per input name.
ShapeArg = Sequence[int] | Sequence[Sequence[int]] | Mapping[str, Sequence[int]] | None

# ONNX TensorProto element types -> the dtype names TVM's importer takes.
_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64"}


@dataclass(frozen=True)
class InputSpec:
    """One graph input: its name, dtype and dims as the file declares them (a str for a symbol, None if unnamed)."""

    name: str
    dtype: str
    dims: tuple[int | str | None, ...]

    @property
    def static(self) -> bool:
        return all(isinstance(d, int) for d in self.dims)

    def describe(self) -> str:
        return f"{self.name!r} ({','.join('?' if d is None else str(d) for d in self.dims)})"


def load_onnx(path: str | Path) -> Any:
    """Read and check an ONNX file; anything that is not a usable model is one clear error."""
    import onnx

    path = Path(path)
    if not path.exists():
        raise ModelImportError(f"no such model file: {path}")
    if not path.is_file():
        raise ModelImportError(f"{path} is not a file")
    if path.stat().st_size == 0:
        raise ModelImportError(f"{path} is empty, not an ONNX model")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types for bad bytes
        raise ModelImportError(f"{path} is not an ONNX model (it does not parse: {_first_line(exc)})") from None
    if not model.graph.node or not model.opset_import:
        raise ModelImportError(f"{path} is not an ONNX model (no graph in it)")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - onnx.checker's ValidationError and friends
        raise ModelImportError(f"{path} is not a valid ONNX model: {_first_line(exc)}") from None
    return model


def graph_inputs(model: Any) -> list[InputSpec]:
    """The inputs a caller feeds (graph inputs that are not initializers)."""
    weights = {init.name for init in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in weights:
            continue
        tensor = value.type.tensor_type
        dims: list[int | str | None] = []
        for d in tensor.shape.dim:
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(int(d.dim_value))
            else:
                dims.append(d.dim_param or None)
        specs.append(InputSpec(value.name, _DTYPES.get(tensor.elem_type, "float32"), tuple(dims)))
    return specs


def bind_input_shapes(inputs: Sequence[InputSpec], shapes: ShapeArg) -> dict[str, tuple[int, ...]]:
    """A static shape for every input: the file's where fixed, the user's where given (and checked)."""
    given = _shapes_by_name(inputs, shapes)
    bound: dict[str, tuple[int, ...]] = {}
    for spec in inputs:
        shape = given.get(spec.name)
        if shape is None:
            if not spec.static:
                symbols = [str(d) if d is not None else f"dim {i}" for i, d in enumerate(spec.dims) if not isinstance(d, int)]
                raise ModelImportError(
                    f"input {spec.describe()} has symbolic dims ({', '.join(symbols)}): give its shape with --input-shape"
                    + (f" {spec.name}=..." if len(inputs) > 1 else "")
                )
            bound[spec.name] = tuple(int(d) for d in spec.dims)  # type: ignore[arg-type]
            continue
        if len(shape) != len(spec.dims):
            raise ModelImportError(
                f"--input-shape {','.join(map(str, shape))} has {len(shape)} dims, input {spec.describe()} has {len(spec.dims)}"
            )
        clash = [i for i, (d, s) in enumerate(zip(spec.dims, shape, strict=True)) if isinstance(d, int) and d != s]
        if clash:
            raise ModelImportError(
                f"--input-shape {','.join(map(str, shape))} contradicts input {spec.describe()}, fixed in the file "
                f"(dim {clash[0]} is {spec.dims[clash[0]]}); give a matching shape or export the model with dynamic axes"
            )
        bound[spec.name] = tuple(int(s) for s in shape)
    return bound


def _shapes_by_name(inputs: Sequence[InputSpec], shapes: ShapeArg) -> dict[str, tuple[int, ...]]:
    names = [s.name for s in inputs]
    if shapes is None:
        return {}
    if isinstance(shapes, Mapping):
        unknown = [n for n in shapes if n not in names]
        if unknown:
            raise ModelImportError(f"the model has no input named {unknown[0]!r}; its inputs: {', '.join(names)}")
        return {n: _check_dims(s) for n, s in shapes.items()}
    items = list(shapes)
    if not items:
        return {}
    if all(isinstance(v, int) for v in items):  # one shape
        if len(inputs) != 1:
            raise ModelImportError(f"the model has {len(inputs)} inputs ({', '.join(names)}): give a shape for each, as NAME=1,3,224,224")
        return {names[0]: _check_dims(items)}  # type: ignore[arg-type]
    if len(items) != len(inputs):
        raise ModelImportError(f"{len(items)} input shapes given, the model has {len(inputs)} inputs ({', '.join(names)})")
    return {n: _check_dims(s) for n, s in zip(names, items, strict=True)}  # type: ignore[arg-type]


def _check_dims(shape: Sequence[int]) -> tuple[int, ...]:
    dims = tuple(int(d) for d in shape)
    if not dims or any(d < 1 for d in dims):
        raise ModelImportError(f"bad input shape {dims}: every dimension must be at least 1")
    return dims


def simplify(model: Any, shapes: Mapping[str, tuple[int, ...]]) -> Any:
    """``model`` with its inputs made static and shape arithmetic and constants folded (onnxslim)."""
    import onnxslim

    for value in model.graph.input:
        if value.name in shapes:
            dims = value.type.tensor_type.shape.dim
            for d, size in zip(dims, shapes[value.name], strict=True):
                d.Clear()
                d.dim_value = size
    try:
        with _quiet():
            return onnxslim.slim(model)
    except Exception:  # noqa: BLE001 - simplification is an optimisation; the importer may still cope
        return model


def expand_functions(model: Any, known: Any) -> Any:
    """Nodes of ops TVM has no converter for, replaced by their definition when ONNX defines the op as a
    function of simpler ops (``Celu`` is ``alpha * Elu(x / alpha)``); other nodes are left as they are."""
    import onnx

    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=1)
    for _ in range(4):  # a definition may use another op that needs expanding
        nodes, changed = [], False
        for index, node in enumerate(model.graph.node):
            body = None if node.domain not in ("", "ai.onnx") or node.op_type in known else _function_of(onnx, node, model, opset)
            if body is None:
                nodes.append(node)
                continue
            changed = True
            rename = dict(zip(body.input, node.input, strict=False)) | dict(zip(body.output, node.output, strict=False))
            prefix = f"{node.name or node.op_type}_{index}/"
            for inner in body.node:
                copy = onnx.NodeProto()
                copy.CopyFrom(inner)
                copy.name = prefix + (inner.name or inner.op_type)
                copy.input[:] = [rename.get(n, prefix + n) if n else "" for n in inner.input]
                copy.output[:] = [rename.get(n, prefix + n) for n in inner.output]
                nodes.append(copy)
        if not changed:
            break
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return model


def _function_of(onnx: Any, node: Any, model: Any, opset: int) -> Any:
    try:
        schema = onnx.defs.get_schema(node.op_type, opset)
    except Exception:  # noqa: BLE001 - not a standard op: nothing to expand
        return None
    if schema.has_context_dependent_function:
        types = {v.name: v.type for v in (*model.graph.input, *model.graph.value_info)}
        types.update({i.name: onnx.helper.make_tensor_type_proto(i.data_type, list(i.dims)) for i in model.graph.initializer})
        if any(n and n not in types for n in node.input):
            return None
        proto = schema.get_context_dependent_function(node.SerializeToString(), [types[n].SerializeToString() for n in node.input if n])
        body = onnx.FunctionProto()
        body.ParseFromString(proto)
        return body if body.node else None
    if schema.has_function:
        body = onnx.FunctionProto()
        body.CopyFrom(schema.function_body)
        given = {a.name: a for a in node.attribute}
        for inner in body.node:
            for attr in inner.attribute:
                if attr.ref_attr_name:
                    source = given.get(attr.ref_attr_name) or schema.attributes[attr.ref_attr_name].default_value
                    name = attr.name
                    attr.CopyFrom(source)
                    attr.name = name
        return body
    return None


def normalize(model: Any) -> Any:
    """Spellings exporters use that TVM's importer misreads: an empty tensor for Resize's unused roi or
    scales (the TorchScript exporter writes one when sizes are given) becomes an absent input."""
    empty = {i.name for i in model.graph.initializer if 0 in i.dims}
    for node in model.graph.node:
        if node.op_type == "Resize":
            node.input[:] = [("" if 0 < i < 3 and name in empty else name) for i, name in enumerate(node.input)]
    return model


def import_onnx(model: Any, shapes: Mapping[str, tuple[int, ...]], dtypes: Mapping[str, str]) -> Any:
    """Relax from a simplified ONNX model (weights as constants); failures name the node."""
    from tvm.relax.frontend.onnx.onnx_frontend import ONNXGraphImporter

    class Importer(ONNXGraphImporter):
        def _convert_operator(self, op_name: str, inputs: Any, attrs: dict[str, Any], opset: int) -> Any:
            try:
                return super()._convert_operator(op_name, inputs, attrs, opset)
            except ModelImportError:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever the converter raises becomes one line naming the node
                node = attrs.get("tvm_custom", {}).get("name") or "(unnamed)"
                shapes = ", ".join(_describe(i) for i in inputs)
                raise ModelImportError(f"TVM cannot import ONNX node {node!r} ({op_name}, inputs {shapes}): {_first_line(exc)}") from None

    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=1)
    known = _get_convert_map()
    model = normalize(expand_functions(model, known))
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or (node.op_type not in known and node.op_type not in ("If", "Constant")):
            op = f"{node.domain}.{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type
            raise ModelImportError(
                f"TVM cannot import ONNX node {node.name or '(unnamed)'!r} ({op}): its ONNX importer has no converter for {op}"
            )
    importer = Importer({k: list(v) for k, v in shapes.items()}, dict(dtypes), keep_params_in_input=False, sanitize=True)
    try:
        with _quiet():
            return importer.from_onnx(model.graph, opset)
    except ModelImportError:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. the unsupported-operator check, before any node
        raise ModelImportError(f"TVM cannot import the model: {_first_line(exc)}") from None


def _describe(value: Any) -> str:
    """An importer value as the user would read it: a shape, ``?`` where unknown."""
    if value is None:
        return "-"
    shape = getattr(getattr(value, "ty", None), "shape", None)
    if shape is None:
        return "?"
    try:
        return "(" + ",".join(str(int(d)) if hasattr(d, "value") or isinstance(d, int) else "?" for d in shape) + ")"
    except TypeError:
        return "?"


@contextlib.contextmanager
def _quiet() -> Any:
    """Keep what onnxslim and TVM's importer print (to stdout) and warn about out of the user's output."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
