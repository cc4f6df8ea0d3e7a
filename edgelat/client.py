"""A client of ``edgelat serve``, on httpx: the shapes of :func:`edgelat.predict` and :func:`edgelat.predict_many`,
so a search loop in another process (or Python environment, without TVM) can swap one for the other.

Example:
    >>> from edgelat.client import Client
    >>> with Client("http://127.0.0.1:8731", token="...") as c:  # doctest: +SKIP
    ...     p = c.predict("mobilenetv2.onnx", device="local")
    ...     p.total_ms, p.kernels[0].op, p.memory.memory_mb

Errors come back as edgelat's: a refused request (unknown device, bad file, bad architecture) raises
:class:`~edgelat.errors.UsageError` (:class:`~edgelat.errors.UnknownDeviceError` for a 404) with the
server's message; anything else :class:`~edgelat.errors.EdgelatError`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from edgelat.errors import EdgelatError, UnknownDeviceError, UsageError
from edgelat.predictors.results import ArchPrediction, Prediction

__all__ = ["Client"]


class Client:
    """``edgelat serve`` at ``url`` (``token``: the bearer token it printed or was given)."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 600.0, transport: httpx.BaseTransport | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise EdgelatError(f"cannot reach {self._http.base_url}: {exc}") from None
        if response.is_success:
            return response.json()
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        if response.status_code == 404:
            raise UnknownDeviceError(str(detail))
        if 400 <= response.status_code < 500:
            raise UsageError(str(detail))
        raise EdgelatError(f"the server failed ({response.status_code}): {detail}")

    def health(self) -> dict[str, Any]:
        return dict(self._call("GET", "/v1/health"))

    def devices(self) -> list[dict[str, Any]]:
        """Every device of the served workspace, with its trained models and their held-out accuracy."""
        return list(self._call("GET", "/v1/devices"))

    def predict(self, model: Any, device: str, *, input_shape: Any = None, recipe: str | None = None, strict: bool = False) -> Prediction:
        """As :func:`edgelat.predict`: ``model`` is an ONNX path (or its bytes) or a ``torch.nn.Module`` (with
        ``input_shape``, exported to ONNX here)."""
        data = _onnx_bytes(model, input_shape)
        form: dict[str, str] = {"strict": "true" if strict else "false"}
        if input_shape is not None and not _is_module(model):
            form["input_shape"] = ",".join(str(int(d)) for d in input_shape)
        if recipe is not None:
            form["recipe"] = recipe
        files = {"model": ("model.onnx", data, "application/octet-stream")}
        return Prediction.from_dict(self._call("POST", f"/v1/devices/{device}/predict", data=form, files=files))

    def predict_many(self, models: Sequence[Any], device: str, *, input_shape: Any = None, recipe: str | None = None) -> list[Prediction]:
        """As :func:`edgelat.predict_many`."""
        return [self.predict(m, device, input_shape=input_shape, recipe=recipe) for m in models]

    def predict_archs(
        self, device: str, space: str, archs: Sequence[str], *, recipe: str | None = None, strict: bool = False
    ) -> list[ArchPrediction]:
        """Architectures of a search space priced block by block (as ``edgelat.workflows.predict_archs``)."""
        body = {"space": space, "archs": list(archs), "recipe": recipe, "strict": strict}
        return [ArchPrediction.from_dict(d) for d in self._call("POST", f"/v1/devices/{device}/predict/archs", json=body)]


def _is_module(model: Any) -> bool:
    return type(model).__module__.startswith("torch") or hasattr(model, "state_dict")


def _onnx_bytes(model: Any, input_shape: Any) -> bytes:
    if isinstance(model, bytes):
        return model
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise UsageError(f"no such file: {path}")
        return path.read_bytes()
    if _is_module(model):
        import torch

        if input_shape is None:
            raise UsageError("a torch module needs input_shape")
        with tempfile.TemporaryDirectory(prefix="edgelat-client-") as tmp:
            path = Path(tmp) / "model.onnx"
            torch.onnx.export(model.eval(), (torch.randn(*input_shape),), str(path), dynamo=False)
            return path.read_bytes()
    raise UsageError(f"model must be an ONNX path, its bytes or a torch.nn.Module, not {type(model).__name__}")
