"""The device commands of the CLI: exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgelat.cli import app
from edgelat.profiler.presets import list_presets
from tests.sshd import SSHServer

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_presets_are_the_documented_ones() -> None:
    """The README's list of presets and the registry agree (adapted devices come from `edgelat adapt` only)."""
    import re

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    paragraph = readme[readme.index("Presets: ") :].split("\n\n")[0]
    documented = set(re.findall(r"`([a-z0-9-]+)`", paragraph))
    assert documented == set(list_presets()) - {"adapted"}, paragraph
    help_text = re.sub(r"-\s+", "-", re.sub(r"\s+", " ", runner.invoke(app, ["device", "add", "--help"]).stdout))  # unwrapped
    assert all(name in help_text for name in documented) and "adapted" not in help_text.split("--preset")[1].split("--")[0]


def test_adapted_devices_come_only_from_adapt(tmp_path: Path) -> None:
    code, _, err = run("device", "add", "phone", "--host", "10.0.0.8", "--preset", "adapted", "-w", str(tmp_path / "w"))
    assert code == 2 and "edgelat adapt" in err


def test_add_list_show_remove(tmp_path: Path) -> None:
    w = str(tmp_path / "w")
    code, out, _ = run("device", "add", "pi", "--host", "10.0.0.7", "--user", "pi", "--preset", "rpi4", "-w", w)
    assert code == 0, out
    code, out, _ = run("device", "list", "--json", "-w", w)
    devices = {d["name"]: d for d in json.loads(out)}
    assert set(devices) == {"local", "pi"}
    assert devices["pi"]["threads"] == 4 and devices["pi"]["address"] == "pi@10.0.0.7:22"
    code, out, _ = run("device", "show", "pi", "--json", "-w", w)
    targets = json.loads(out)["targets"]  # per recipe
    assert targets["default"]["mcpu"] == targets["tuned"]["mcpu"] == "cortex-a72"
    assert run("device", "remove", "pi", "-w", w)[0] == 0
    assert [d["name"] for d in json.loads(run("device", "list", "--json", "-w", w)[1])] == ["local"]


def test_remove_takes_everything_of_the_device_and_nothing_else(tmp_path: Path) -> None:
    """An old adapter once silently took priority over a new device of the same name."""
    from edgelat.errors import UsageError
    from edgelat.predictors.predict import load_model
    from edgelat.workspace import open_workspace

    w = tmp_path / "w"
    for name in ("pi", "pi-2"):
        assert run("device", "add", name, "--host", "10.0.0.7", "--preset", "rpi4", "-w", str(w))[0] == 0
    with open_workspace(w) as ws:
        for name in ("pi", "pi-2"):
            ws.store.insert("probes", {"device": name, "data": "{}"})
            campaign = ws.store.insert(
                "campaigns",
                {"device": name, "recipe": "default", "ops": "[]", "plan": "[]", "target": "{}", "threads": 1, "tvm_version": "x", "seed": 0,
                 "uid": uuid.uuid4().hex},
            )  # fmt: skip
            ws.store.insert_new("kernel_configs", [{"config_id": "c1", "op": "dense", "params": "{}"}], keys=["config_id"])
            ws.store.insert(
                "measurements",
                {"campaign_id": campaign["id"], "device": name, "config_id": "c1", "op": "dense", "recipe": "default", "status": "ok", "median_ms": 1.0},
            )
            ws.store.insert(
                "network_measurements",
                {"device": name, "recipe": "default", "name": "n", "network_hash": "h", "threads": 1, "median_ms": 1.0, "data": "{}",
                 "uid": uuid.uuid4().hex},
            )  # fmt: skip
            files = [ws.adapter_file(name), ws.model_dir(name, "default") / "meta.json", ws.oracle_dir(name, "default") / "nb201.json",
                     ws.tuning_dir(name) / "database_workload.json", ws.run_dir("searches", name, "ofa-40ms") / "best.json",
                     ws.run_dir("pruned", name, "6ms") / "steps.csv", ws.run_dir("validation", name, "default") / "validation.csv",
                     ws.device_dir("exports", name) / "kernels.csv"]  # fmt: skip
            for f in files:
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_text("{}")
    assert run("device", "remove", "pi", "-w", str(w))[0] == 0
    with open_workspace(w) as ws:
        for table in ("probes", "campaigns", "measurements", "network_measurements"):
            rows = [r["device"] for r in ws.store.rows(f"SELECT device FROM {table}")]
            assert rows == ["pi-2"], (table, rows)
        for folder in ws.DEVICE_FOLDERS:
            assert not ws.device_dir(folder, "pi").exists() and ws.device_dir(folder, "pi-2").exists(), folder
    # The same name again is a new device: no adapter or models of the old one answer for it.
    assert run("device", "add", "pi", "--host", "10.0.0.9", "--preset", "rpi5", "-w", str(w))[0] == 0
    with open_workspace(w) as ws, pytest.raises(UsageError, match="no kernel measurements"):
        load_model(ws, "pi")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "rpi9"], "unknown preset 'rpi9'"),
        (["--preset", "rpi4", "--port", "70000"], "bad port 70000"),
        (["--preset", "rpi4", "--port", "0"], "bad port 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    code, _, err = run("device", "add", "d1", "--host", "h", *args, "-w", str(tmp_path))
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_duplicate_and_hostile_names(tmp_path: Path) -> None:
    w = str(tmp_path)
    assert run("device", "add", "d1", "--host", "h", "--preset", "rpi5", "-w", w)[0] == 0
    code, _, err = run("device", "add", "d1", "--host", "h", "--preset", "rpi5", "-w", w)
    assert code == 2 and "already exists" in err
    code, _, err = run("device", "add", "x;rm -rf ~", "--host", "h", "--preset", "rpi5", "-w", w)
    assert code == 2 and "bad device name" in err
    assert run("device", "show", "nope", "-w", w)[0] == 2
    assert run("device", "remove", "local", "-w", w)[0] == 2


def test_probe_local_json(tmp_path: Path) -> None:
    code, out, err = run("device", "probe", "local", "--json", "-w", str(tmp_path))
    assert code == 0, err
    data = json.loads(out)
    for key in ("arch", "cpu_count", "cpu_model", "mem_total_mb", "python", "tvm_version"):
        assert key in data
    assert data["python"] == ".".join(map(str, sys.version_info[:3]))


def test_workspace_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGELAT_HOME", str(tmp_path / "envws"))
    assert run("device", "add", "d2", "--host", "h", "--preset", "rpi4")[0] == 0
    assert (tmp_path / "envws" / "edgelat.db").exists()


@pytest.mark.ssh
def test_ssh_device_through_cli(tmp_path: Path, sshd_server: SSHServer) -> None:
    w = str(tmp_path)
    base = [
        "device",
        "add",
        "lo",
        "--host",
        "127.0.0.1",
        "--port",
        str(sshd_server.port),
        "--user",
        sshd_server.user,
        "--key",
        str(sshd_server.client_key),
        "--preset",
        "local",
        "--python",
        sys.executable,
        "-w",
        w,
    ]
    assert run(*base)[0] == 0
    code, _, err = run("device", "probe", "lo", "--json", "-w", w)
    assert code == 1 and "edgelat device trust lo" in err
    code, out, err = run("device", "probe", "lo", "--json", "--trust-new-host", "-w", w)
    assert code == 0, err
    assert json.loads(out)["device"] == "lo"
