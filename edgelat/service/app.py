"""The service: versioned JSON routes under ``/v1`` and a server-rendered page at ``/``, for one workspace.

Every route but ``GET /v1/health`` needs the token: ``Authorization: Bearer TOKEN``, or for the page a
cookie set by opening ``/?token=TOKEN`` (the address ``edgelat serve`` prints). Errors are problem details
(RFC 9457: ``type``, ``title``, ``status``, ``detail``) whose detail is the CLI's message.

All work on the workspace runs in one worker thread (:class:`_Worker`): it opens the workspace and its store
(the workspace's own or ``--store``'s), loads each device's models once and again when ``train`` replaces them,
and TVM imports one network at a time. Uploads are bounded as they arrive (:class:`_BodyLimit`) and parsed in a temporary
directory that is removed after the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import logging
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, TypeVar

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

import edgelat
from edgelat.errors import EdgelatError, RequestRefusedError, UnknownDeviceError, UsageError
from edgelat.workspace import Workspace, open_workspace

__all__ = ["ServeSettings", "create_app"]

log = logging.getLogger(__name__)
T = TypeVar("T")
COOKIE = "edgelat_token"


@dataclass(frozen=True)
class ServeSettings:
    """One service: its workspace, its token, and what one request may ask."""

    workspace: Path
    token: str
    # The largest request body (an ONNX upload and its form), MB.
    max_upload_mb: float = 200.0
    # The most architecture strings one batch may price.
    max_archs: int = 10_000
    # A team store's URL (None: the workspace's own store).
    store: str | None = None


class _Worker:
    """The one thread that touches the workspace, the models and TVM (see the module docstring)."""

    def __init__(self, root: Path, store: str | None) -> None:
        self.root, self.store = root, store
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="edgelat-serve")
        self._ws: Workspace | None = None
        self._models: dict[tuple[str, str], tuple[tuple[int, ...], Any]] = {}
        self._oracles: dict[tuple[str, str, str], tuple[tuple[int, ...], Any]] = {}

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(self._call, fn, *args))

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._ws is None:
            self._ws = open_workspace(self.root, self.store)
        return fn(self, *args)

    @property
    def ws(self) -> Workspace:
        assert self._ws is not None and threading.current_thread().name.startswith("edgelat-serve")
        return self._ws

    def recipe(self, device: str, recipe: str | None) -> str:
        from edgelat.profiler.inventory import get_device
        from edgelat.workflows.oracle import model_recipe

        get_device(self.ws, device)  # an unknown device: one clear error before anything is loaded
        return model_recipe(self.ws, device, recipe)

    def model(self, device: str, recipe: str | None) -> Any:
        """``device``'s latency models for ``recipe``, loaded once, again when their files change."""
        from edgelat.predictors.predict import load_model
        from edgelat.service.views import model_stamp

        recipe = self.recipe(device, recipe)
        stamp = model_stamp(self.ws, device, recipe)
        kept = self._models.get((device, recipe))
        if kept is None or kept[0] != stamp:
            log.info("loading the %s models of %s", recipe, device)
            kept = (stamp, load_model(self.ws, device, recipe))
            self._models[(device, recipe)] = kept
        return kept[1]

    def oracle(self, device: str, space: Any, recipe: str | None) -> Any:
        """``device``'s block oracle for ``space``, made once per trained model."""
        from edgelat.service.views import model_stamp
        from edgelat.workflows.oracle import device_oracle

        model = self.model(device, recipe)
        stamp = model_stamp(self.ws, device, model.recipe)
        key = (device, model.recipe, space.name)
        kept = self._oracles.get(key)
        if kept is None or kept[0] != stamp:
            kept = (stamp, device_oracle(self.ws, device, space, model.recipe, model=model))
            self._oracles[key] = kept
        return kept[1]

    def warm(self) -> None:
        """Open the workspace and import TVM and the network importers, so the first request does not wait for
        them (a request answered by a cold worker took longer than a client's usual 5 s timeout on a busy host)."""
        import tvm.relax.frontend.onnx  # noqa: F401
        import xgboost  # noqa: F401

        import edgelat.ops.footprint  # noqa: F401
        import edgelat.predictors.predict  # noqa: F401

    def close(self) -> None:
        self._pool.submit(self._close_ws).result()
        self._pool.shutdown()

    def _close_ws(self) -> None:
        if self._ws is not None:
            self._ws.close()
            self._ws = None


class _BodyLimit:
    """Refuses request bodies over ``limit`` bytes: at once when ``Content-Length`` says so, else as the bytes
    arrive (a chunked upload is cut off there, before it fills the disk)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]], send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await _problem(413, f"the request body is {int(length) / 2**20:.1f} MB, over the {self.limit / 2**20:g} MB limit")(
                scope, receive, send
            )
            return
        seen = 0

        async def limited() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise RequestRefusedError(413, f"the request body is over the {self.limit / 2**20:g} MB limit")
            return message

        await self.app(scope, limited, send)


def _problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """A problem details response (RFC 9457)."""
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status, "detail": detail}
    return JSONResponse(body, status_code=status, media_type="application/problem+json", headers=headers)


def _status(exc: EdgelatError) -> int:
    if isinstance(exc, RequestRefusedError):
        return exc.status
    if isinstance(exc, UnknownDeviceError):
        return 404
    return 400 if isinstance(exc, UsageError) else 500


class ArchBatch(BaseModel):
    """``POST /v1/devices/{name}/predict/archs``: architecture strings of a search space."""

    space: str = Field(description="A search space's name (edgelat.nas.SPACES).")
    archs: list[str] = Field(description="Architecture strings of the space.")
    recipe: str | None = Field(default=None, description="Compile recipe of the models (default: the device's).")
    strict: bool = Field(default=False, description="Refuse architectures with kernels no kind's model covers.")


def _shape(text: str | None) -> list[int] | None:
    if text is None or not text.strip():
        return None
    try:
        shape = [int(d) for d in text.split(",")]
    except ValueError:
        raise UsageError(f"input_shape must be integers separated by commas, like 1,3,224,224; got {text!r}") from None
    if not shape or any(d <= 0 for d in shape):
        raise UsageError(f"input_shape must be positive integers, got {text!r}")
    return shape


def _predict_upload(
    worker: _Worker, device: str, data: bytes, filename: str | None, input_shape: str | None, recipe: str | None, strict: bool
) -> dict[str, Any]:
    from edgelat.predictors.predict import predict_network

    shape = _shape(input_shape)
    model = worker.model(device, recipe)
    with tempfile.TemporaryDirectory(prefix="edgelat-upload-") as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(data)
        try:
            prediction = predict_network(
                worker.ws, device, path, input_shape=shape, recipe=model.recipe, strict=strict, latency_model=model
            )
        except UsageError as exc:  # the message names the upload, not the temporary file
            exc.args = (str(exc).replace(str(path), filename or "the uploaded file"),)
            raise
        except Exception as exc:  # a file no importer makes sense of: the client's fault, told in one line
            raise UsageError(
                f"the uploaded file could not be read as an ONNX network: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
            ) from None
    return prediction.as_dict()


def _predict_archs(worker: _Worker, device: str, batch: ArchBatch) -> list[dict[str, Any]]:
    from edgelat.nas.spaces import get_space
    from edgelat.workflows.oracle import predict_archs

    space = get_space(batch.space)
    oracle = worker.oracle(device, space, batch.recipe)
    return [
        p.as_dict() for p in predict_archs(worker.ws, device, space, batch.archs, recipe=batch.recipe, strict=batch.strict, oracle=oracle)
    ]


def _describe(worker: _Worker, kernels: list[dict[str, Any]]) -> list[str]:
    """Each kernel's configuration in words, as ``predict``'s table shows it."""
    from edgelat.ops import get_op

    return [get_op(k["op"]).describe(k["config"]) if k["op"] and k["config"] else "" for k in kernels]


def _page_data(worker: _Worker) -> dict[str, Any]:
    from edgelat.service import views

    devices = views.devices(worker.ws)
    for d in devices:
        d["validation"] = views.latest_validation(worker.ws, d["name"])
    return {"devices": devices, "campaigns": views.campaigns(worker.ws)}


def _device(worker: _Worker, name: str) -> dict[str, Any]:
    from edgelat.service import views

    found = [d for d in views.devices(worker.ws) if d["name"] == name]
    if not found:
        worker.recipe(name, None)  # raises the CLI's unknown-device error
    return {**found[0], "campaigns": [c for c in views.campaigns(worker.ws) if c["device"] == name],
            "validation": views.latest_validation(worker.ws, name)}  # fmt: skip


def _validation_plot(worker: _Worker, name: str) -> str:
    from edgelat.service import views

    worker.recipe(name, None)
    found = views.latest_validation(worker.ws, name)
    if found is None:
        raise RequestRefusedError(404, f"{name} has no validation yet: run `edgelat validate {name}`")
    return str(found["plot"])


def create_app(settings: ServeSettings) -> FastAPI:
    """The application serving ``settings.workspace``."""
    worker = _Worker(settings.workspace, settings.store)
    templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Before the port opens (uvicorn binds after startup): a store that is not there yet only warns here;
        # each request then says what is wrong with it.
        try:
            await worker.run(_Worker.warm)
        except EdgelatError as exc:
            log.warning("%s", exc)
        yield
        worker.close()

    app = FastAPI(
        title="edgelat",
        version=edgelat.__version__,
        description="Latency, memory and size predictions of networks on edge devices, from one edgelat workspace.",
        lifespan=lifespan,
    )
    app.add_middleware(_BodyLimit, limit=int(settings.max_upload_mb * 2**20))

    @app.exception_handler(EdgelatError)
    async def edgelat_error(request: Request, exc: EdgelatError) -> JSONResponse:
        status = _status(exc)
        return _problem(status, str(exc), {"WWW-Authenticate": "Bearer"} if status == 401 else None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _problem(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _problem(422, f"{where}: {first.get('msg', 'invalid request')}" if where else str(first.get("msg", "invalid request")))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _problem(500, f"internal error: {type(exc).__name__}: {exc}")

    def authorized(request: Request) -> None:
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else request.cookies.get(COOKIE, "")
        if not token or not hmac.compare_digest(token.encode(), settings.token.encode()):
            raise RequestRefusedError(401, "a valid token is needed: Authorization: Bearer TOKEN (edgelat serve printed it)")

    auth = [Depends(authorized)]

    # -- JSON routes ------------------------------------------------------------------------------
    @app.get("/v1/health", tags=["service"])
    async def health() -> dict[str, Any]:
        """Up and serving (no token needed)."""
        return {"status": "ok", "version": edgelat.__version__}

    @app.get("/v1/version", tags=["service"], dependencies=auth)
    async def version() -> dict[str, Any]:
        """edgelat's version and the API's."""
        import importlib.metadata

        return {"edgelat": edgelat.__version__, "api": "v1", "tvm": importlib.metadata.version("apache-tvm")}

    @app.get("/v1/devices", tags=["devices"], dependencies=auth)
    async def devices() -> list[dict[str, Any]]:
        """Every device: preset, latest probe in brief, recipes with trained models and their held-out accuracy."""
        from edgelat.service import views

        return await worker.run(lambda w: views.devices(w.ws))

    @app.get("/v1/devices/{name}", tags=["devices"], dependencies=auth)
    async def device(name: str) -> dict[str, Any]:
        """One device, its campaigns and its latest validation."""
        return await worker.run(_device, name)

    @app.post("/v1/devices/{name}/predict", tags=["predict"], dependencies=auth)
    async def predict(request: Request, name: str) -> dict[str, Any]:
        """An ONNX network's predicted latency with its per-kernel breakdown, peak memory and size (``predict --json``).

        Multipart form: ``model`` (the ONNX file), optional ``input_shape`` (``1,3,224,224``), ``recipe``, ``strict``.
        """
        form = await _form(request)
        upload = form.get("model")
        if upload is None or isinstance(upload, str):
            raise RequestRefusedError(400, "the form has no file field 'model' (the ONNX network)")
        data = await upload.read()
        return await worker.run(
            _predict_upload,
            name,
            data,
            upload.filename,
            _text(form, "input_shape"),
            _text(form, "recipe"),
            _text(form, "strict") in ("1", "true"),
        )

    @app.post("/v1/devices/{name}/predict/archs", tags=["predict"], dependencies=auth)
    async def predict_archs(name: str, batch: ArchBatch) -> list[dict[str, Any]]:
        """Architectures of a search space priced block by block (``predict --space S --archs-file F --json``)."""
        if len(batch.archs) > settings.max_archs:
            raise RequestRefusedError(413, f"{len(batch.archs)} architectures in one batch, over the limit of {settings.max_archs}")
        if not batch.archs:
            raise RequestRefusedError(400, "the batch holds no architecture")
        return await worker.run(_predict_archs, name, batch)

    # -- the page ---------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False, response_model=None)
    async def index(request: Request, token: str | None = None) -> Response:
        if token is not None:  # the printed address: keep the token in a cookie, drop it from the address bar
            if not hmac.compare_digest(token.encode(), settings.token.encode()):
                return templates.TemplateResponse(request, "login.html", {"error": "that token is not this server's"}, status_code=401)
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
            return response
        try:
            authorized(request)
        except RequestRefusedError:
            return templates.TemplateResponse(request, "login.html", {"error": None}, status_code=401)
        data = await worker.run(_page_data)
        return templates.TemplateResponse(request, "index.html", {**data, "version": edgelat.__version__, "workspace": str(settings.workspace),
                                                                  "max_upload_mb": settings.max_upload_mb})  # fmt: skip

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = await _form(request)
        return RedirectResponse(f"/?token={_text(form, 'token') or ''}", status_code=303)

    @app.get("/plots/{name}/validation.png", include_in_schema=False, dependencies=auth)
    async def validation_plot(name: str) -> FileResponse:
        return FileResponse(await worker.run(_validation_plot, name), media_type="image/png")

    @app.post("/predict", include_in_schema=False, dependencies=auth, response_class=HTMLResponse)
    async def predict_page(request: Request) -> Response:
        form = await _form(request)
        device = _text(form, "device") or ""
        upload = form.get("model")
        context: dict[str, Any] = {"device": device, "filename": getattr(upload, "filename", None), "prediction": None, "error": None}
        status = 200
        try:
            if upload is None or isinstance(upload, str) or not upload.filename:
                raise UsageError("choose an ONNX file to upload")
            data = await upload.read()
            context["prediction"] = await worker.run(
                _predict_upload, device, data, upload.filename, _text(form, "input_shape"), None, False
            )
            context["described"] = await worker.run(_describe, context["prediction"]["kernels"])
        except EdgelatError as exc:  # shown on the page, with the status the JSON routes give it
            context["error"], status = str(exc), _status(exc)
        return templates.TemplateResponse(request, "prediction.html", context, status_code=status)

    return app


async def _form(request: Request) -> Any:
    try:
        return await request.form()
    except RequestRefusedError:
        raise
    except Exception as exc:  # a truncated or malformed multipart body
        raise RequestRefusedError(400, f"the request is not a readable form: {type(exc).__name__}: {exc}") from None


def _text(form: Any, key: str) -> str | None:
    value = form.get(key)
    return value if isinstance(value, str) and value.strip() else None
