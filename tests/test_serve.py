"""`edgelat serve` as a real uvicorn process on a loopback port: curl, httpx and the client against it, bad input
that must not crash it, models reloaded when `train` replaces them, and the page in headless Chromium."""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import edgelat
from edgelat.cli import app
from edgelat.client import Client
from edgelat.errors import UnknownDeviceError, UsageError
from edgelat.workspace import open_workspace
from tests.sshd import free_port

pytestmark = pytest.mark.slow

TOKEN = "test-token-0123456789abcdef"
# A busy host (two pytest workers beside a root file system being built) has answered a prediction in more than
# httpx's default 5 s; what these tests check is the answer, not how fast it comes.
_get = functools.partial(httpx.get, timeout=60)
_post = functools.partial(httpx.post, timeout=60)


@dataclass
class Server:
    url: str
    root: Path
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    def alive(self) -> bool:
        return self.process.poll() is None and httpx.get(f"{self.url}/v1/health", timeout=10).status_code == 200


def _start(root: Path, tmp: Path, *extra: str) -> Server:
    token_file = tmp / "token"
    token_file.write_text(TOKEN + "\n")
    port = free_port()
    log = tmp / f"serve-{port}.log"
    args = [sys.executable, "-m", "edgelat.cli", "serve", "--port", str(port), "--token-file", str(token_file), "-w", str(root), *extra]
    process = subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    server = Server(f"http://127.0.0.1:{port}", root, process, log)
    deadline = time.time() + 90
    while time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"edgelat serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{server.url}/v1/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.3)
    process.kill()
    raise AssertionError(f"edgelat serve did not answer in 90 s:\n{log.read_text()}")


def _stop(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()


def _mlp(width: int = 256) -> nn.Module:
    torch.manual_seed(width)
    return nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10)).eval()


def _onnx(path: Path, width: int = 256) -> Path:
    torch.onnx.export(_mlp(width), (torch.randn(1, 64),), str(path), dynamo=False)
    return path


@pytest.fixture
def served(trained: Path, tmp_path: Path) -> Iterator[Server]:
    root = Path(shutil.copytree(trained, tmp_path / "ws"))
    server = _start(root, tmp_path)
    yield server
    _stop(server)


def test_the_service_answers_curl_httpx_and_the_client_as_predict_does(served: Server, tmp_path: Path) -> None:
    onnx, onnx_wide = _onnx(tmp_path / "mlp.onnx"), _onnx(tmp_path / "wide.onnx", 512)
    health = subprocess.run(["curl", "-sf", f"{served.url}/v1/health"], capture_output=True, text=True, check=True)
    assert json.loads(health.stdout) == {"status": "ok", "version": edgelat.__version__}
    # Everything else needs the token; refusals are problem details.
    refused = _get(f"{served.url}/v1/devices")
    assert refused.status_code == 401 and refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["status"] == 401 and "token" in refused.json()["detail"] and refused.headers["www-authenticate"] == "Bearer"
    assert _get(f"{served.url}/v1/devices", headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401
    devices = _get(f"{served.url}/v1/devices", headers=served.auth).json()
    local = next(d for d in devices if d["name"] == "local")
    assert local["preset"] and {"dense", "activation", "fallback"} <= set(local["models"][0]["ops"])
    assert 0 <= local["models"][0]["ops"]["dense"]["rmspe"] and local["models"][0]["ops"]["dense"]["n"] >= 10
    # An upload priced as `edgelat predict --json` prices the file in-process.
    in_process = edgelat.predict(str(onnx), "local", workspace=served.root)
    upload = subprocess.run(
        ["curl", "-sf", "-H", f"Authorization: Bearer {TOKEN}", "-F", f"model=@{onnx}", f"{served.url}/v1/devices/local/predict"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    cli = CliRunner().invoke(app, ["predict", "local", str(onnx), "--json", "-w", str(served.root)])
    assert json.loads(upload.stdout) == json.loads(cli.stdout) == json.loads(json.dumps(in_process.as_dict()))
    # The client has predict's and predict_many's shapes.
    with Client(served.url, token=TOKEN) as client:
        remote = client.predict(onnx, "local")
        assert remote == in_process and remote.memory is not None and remote.kernels[0].op == in_process.kernels[0].op
        many = client.predict_many([onnx, onnx_wide], "local")
        assert [p.total_ms for p in many] == [p.total_ms for p in edgelat.predict_many([str(onnx), str(onnx_wide)], "local", workspace=served.root)]
        assert client.predict(_mlp(), "local", input_shape=(1, 64)).total_ms == pytest.approx(in_process.total_ms, rel=1e-6)
        # Architectures of a space, priced block by block as in-process.
        from edgelat.nas import get_space
        from edgelat.workflows import predict_archs

        space = get_space("nb201")
        archs = [space.sample(np.random.default_rng(i)) for i in range(3)]
        remote_archs = client.predict_archs("local", "nb201", archs)
        with open_workspace(served.root) as ws:
            local_archs = predict_archs(ws, "local", space, archs)
        assert remote_archs == local_archs
        # Refusals carry the CLI's messages, as edgelat's errors.
        with pytest.raises(UnknownDeviceError) as unknown:
            client.predict(onnx, "nope")
        cli_unknown = CliRunner().invoke(app, ["predict", "nope", str(onnx), "-w", str(served.root)])
        assert cli_unknown.exit_code == 2 and str(unknown.value) in " ".join(cli_unknown.output.split())
        with pytest.raises(UsageError, match="architecture 2:"):
            client.predict_archs("local", "nb201", [archs[0], "not-an-arch"])
        with pytest.raises(UsageError, match="nb999"):
            client.predict_archs("local", "nb999", archs)
    # Bad input of every kind: a 4xx with a message, and the server goes on serving.
    rng = np.random.default_rng(0)
    for i in range(5):
        garbage = rng.bytes(int(rng.integers(1, 200_000)))
        bad = _post(f"{served.url}/v1/devices/local/predict", headers=served.auth, files={"model": ("x.onnx", garbage)})
        assert bad.status_code == 400 and bad.json()["detail"], (i, bad.text)
    truncated = _post(
        f"{served.url}/v1/devices/local/predict",
        headers={**served.auth, "Content-Type": "multipart/form-data; boundary=xyz"},
        content=b'--xyz\r\nContent-Disposition: form-data; name="model"; filename="m.onnx"\r\n\r\n' + onnx.read_bytes()[:500],
    )  # fmt: skip
    assert truncated.status_code == 400, truncated.text
    no_file = _post(f"{served.url}/v1/devices/local/predict", headers=served.auth, data={"input_shape": "1,64"})
    assert no_file.status_code == 400 and "'model'" in no_file.json()["detail"]
    bad_shape = _post(f"{served.url}/v1/devices/local/predict", headers=served.auth, data={"input_shape": "1,x"},
                           files={"model": ("m.onnx", onnx.read_bytes())})  # fmt: skip
    assert bad_shape.status_code == 400 and "input_shape" in bad_shape.json()["detail"]
    huge = _post(f"{served.url}/v1/devices/local/predict/archs", headers=served.auth, json={"space": "nb201", "archs": ["x"] * 10_001})
    assert huge.status_code == 413 and "10000" in huge.json()["detail"]
    not_json = _post(f"{served.url}/v1/devices/local/predict/archs", headers={**served.auth, "Content-Type": "application/json"}, content=b"{")
    assert not_json.status_code == 422
    assert _get(f"{served.url}/v1/nothing", headers=served.auth).status_code == 404
    # The page's form answers with the status the JSON route gives the same error (an unknown device: 404).
    page_unknown = _post(f"{served.url}/predict", headers=served.auth, data={"device": "nowhere"}, files={"model": ("m.onnx", onnx.read_bytes())})
    assert page_unknown.status_code == 404 and "nowhere" in page_unknown.text
    page_no_file = _post(f"{served.url}/predict", headers=served.auth, data={"device": "local"})
    assert page_no_file.status_code == 400 and "choose an ONNX file" in page_no_file.text
    assert served.alive()
    again = _post(f"{served.url}/v1/devices/local/predict", headers=served.auth, files={"model": ("m.onnx", onnx.read_bytes())})
    assert again.status_code == 200 and again.json()["total_ms"] == in_process.total_ms
    # OpenAPI and the docs.
    spec = _get(f"{served.url}/openapi.json").json()
    assert {"/v1/health", "/v1/devices", "/v1/devices/{name}/predict", "/v1/devices/{name}/predict/archs"} <= set(spec["paths"])
    assert _get(f"{served.url}/docs").status_code == 200
    # Retrained on other measurements (5 of the dense kernels gone), the served models are reloaded.
    from edgelat.predictors.train import train_device

    with open_workspace(served.root) as ws:
        ws.store.execute("DELETE FROM measurements WHERE id IN (SELECT id FROM measurements WHERE op = 'dense' ORDER BY id LIMIT 5)")
        train_device(ws, "local")
    retrained = edgelat.predict(str(onnx), "local", workspace=served.root)
    assert retrained.total_ms != in_process.total_ms
    with Client(served.url, token=TOKEN) as client:
        assert client.predict(onnx, "local").total_ms == retrained.total_ms
    # Uploads leave nothing behind in the temporary directory.
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob("edgelat-upload-*"))


def test_uploads_over_the_limit_are_refused_as_they_arrive(trained: Path, tmp_path: Path) -> None:
    server = _start(Path(shutil.copytree(trained, tmp_path / "ws")), tmp_path, "--max-upload-mb", "1", "--max-archs", "5")
    try:
        big = os.urandom(2 * 2**20)
        declared = _post(f"{server.url}/v1/devices/local/predict", headers=server.auth, files={"model": ("m.onnx", big)})
        assert declared.status_code == 413 and "1 MB limit" in declared.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'--xyz\r\nContent-Disposition: form-data; name="model"; filename="m.onnx"\r\n\r\n'
            for i in range(0, len(big), 65536):
                yield big[i : i + 65536]
            yield b"\r\n--xyz--\r\n"

        streamed = _post(
            f"{server.url}/v1/devices/local/predict", headers={**server.auth, "Content-Type": "multipart/form-data; boundary=xyz"},
            content=chunks(),
        )  # fmt: skip
        assert streamed.status_code == 413, streamed.text
        batch = _post(f"{server.url}/v1/devices/local/predict/archs", headers=server.auth, json={"space": "nb201", "archs": ["a"] * 6})
        assert batch.status_code == 413 and "limit of 5" in batch.json()["detail"]
        assert server.alive()
    finally:
        _stop(server)


def test_serve_refuses_bad_settings_in_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["serve", "--token-file", str(tmp_path / "none"), "-w", str(tmp_path / "ws")])
    assert missing.exit_code == 2 and "no such file" in missing.output
    (tmp_path / "short").write_text("abc")
    short = runner.invoke(app, ["serve", "--token-file", str(tmp_path / "short"), "-w", str(tmp_path / "ws")])
    assert short.exit_code == 2 and "at least 16" in short.output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = runner.invoke(app, ["serve", "--port", str(port), "-w", str(tmp_path / "ws")])
    assert busy.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in busy.output


CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.mark.timings_ignored
@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason="needs Debian's chromium and chromium-driver (.ci/run installs them)")
def test_the_page_in_headless_chromium(served: Server, tmp_path: Path) -> None:
    """The page a person opens from the printed address: devices, models' accuracy, the last validation's plot and
    campaigns; then the upload form, submitted, shows the per-kernel breakdown."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from edgelat.workflows.validate import validate_device

    with open_workspace(served.root) as ws:
        validated = validate_device(ws, "local", zoo="mobilenetv2_050@32")
    onnx = _onnx(tmp_path / "mlp.onnx")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1800"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(30)  # a submitted form's page may not have loaded when the next element is looked up
    try:
        driver.get(f"{served.url}/")  # no token: the login page
        assert "needs the server's token" in driver.find_element(By.TAG_NAME, "body").text
        driver.get(f"{served.url}/?token={TOKEN}")
        assert "token" not in driver.current_url  # kept in a cookie, not in the address bar
        body = driver.find_element(By.TAG_NAME, "body").text
        for heading in ("Predict a network", "Devices", "Trained models", "Last validation", "Profiling campaigns"):
            assert heading in body, heading
        assert "dense" in body and "local" in body and f"{len(validated.rows)} network" in body
        plot = driver.find_element(By.CSS_SELECTOR, "img.plot")
        assert driver.execute_script("return arguments[0].naturalWidth", plot) > 100  # the PNG loaded
        assert driver.find_elements(By.TAG_NAME, "progress")
        shot = tmp_path / "page.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 20_000
        Select(driver.find_element(By.NAME, "device")).select_by_value("local")
        driver.find_element(By.NAME, "model").send_keys(str(onnx))
        driver.find_element(By.CSS_SELECTOR, "form.upload button").click()
        summary = driver.find_element(By.ID, "summary").text
        expected = edgelat.predict(str(onnx), "local", workspace=served.root)
        assert f"{expected.total_ms:.4g} ms" in summary and "peak memory" in summary
        rows = driver.find_elements(By.CSS_SELECTOR, "#kernels tr")
        assert len(rows) == len(expected.kernels) + 1 and "m=1 k=64 n=256" in rows[1].text, rows[1].text
        assert driver.save_screenshot(str(tmp_path / "prediction.png"))
        # A file that is no network: the page says why, in one line.
        (tmp_path / "bad.onnx").write_bytes(b"not a network")
        driver.get(f"{served.url}/")
        driver.find_element(By.NAME, "model").send_keys(str(tmp_path / "bad.onnx"))
        driver.find_element(By.CSS_SELECTOR, "form.upload button").click()
        assert driver.find_element(By.ID, "error").text.startswith("bad.onnx is not an ONNX model")
    finally:
        driver.quit()
    assert served.alive()


def test_the_service_serves_a_team_store(trained: Path, tmp_path: Path, postgres: object) -> None:
    """`edgelat serve --store postgresql://...`: a device pushed to the team store and trained there is listed and
    priced as `predict --store` prices it; the password is in no line the server writes."""
    url = postgres.create_database("served")  # type: ignore[attr-defined]
    password = postgres.password  # type: ignore[attr-defined]
    runner = CliRunner()
    pushed = runner.invoke(app, ["data", "push", "local", "--as", "box", "-w", str(trained), "--store", url])
    assert pushed.exit_code == 0, pushed.output
    root = tmp_path / "ws"
    trained_there = runner.invoke(app, ["train", "box", "-w", str(root), "--store", url])
    assert trained_there.exit_code == 0, trained_there.output
    server = _start(root, tmp_path, "--store", url)
    try:
        devices = _get(f"{server.url}/v1/devices", headers=server.auth).json()
        box = next(d for d in devices if d["name"] == "box")
        assert {"dense", "activation"} <= set(box["models"][0]["ops"])
        onnx = _onnx(tmp_path / "mlp.onnx")
        served = _post(f"{server.url}/v1/devices/box/predict", headers=server.auth, files={"model": ("mlp.onnx", onnx.read_bytes())})
        cli = runner.invoke(app, ["predict", "box", str(onnx), "--json", "-w", str(root), "--store", url])
        assert served.status_code == 200 and served.json() == json.loads(cli.stdout)
    finally:
        _stop(server)
    assert password not in server.log.read_text()
