"""Board power where the agent can read it: copies of the INA3221 sysfs layouts Jetson boards expose.

No board with power monitors was reachable; these trees follow the documented layouts: the mainline
``ina3221`` hwmon driver (Documentation/hwmon/ina3221.rst: inN_label, inN_input in mV, currN_input in mA,
in7_label for the sum of shunt voltages) as Jetson Linux 34+ exposes it (an Orin's VDD_IN,
VDD_CPU_GPU_CV, VDD_SOC at 1-0040), and NVIDIA's older IIO driver ``ina3221x`` of Jetson Linux 32
(a Nano's POM_5V_IN, POM_5V_GPU, POM_5V_CPU at 6-0040: rail_name_N, in_powerN_input in mW).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edgelat.device_agents.agent import PowerSampler, power_rails, rails_mw


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return root


def orin(root: Path) -> Path:
    hw = "bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
    return _write(root, {
        f"{hw}/name": "ina3221",
        f"{hw}/in1_label": "VDD_IN", f"{hw}/in1_input": "5080", f"{hw}/curr1_input": "1216",
        f"{hw}/in2_label": "VDD_CPU_GPU_CV", f"{hw}/in2_input": "5072", f"{hw}/curr2_input": "320",
        f"{hw}/in3_label": "VDD_SOC", f"{hw}/in3_input": "5080", f"{hw}/curr3_input": "480",
        f"{hw}/in7_label": "sum of shunt voltages", f"{hw}/in7_input": "1450",
    })  # fmt: skip


def nano(root: Path) -> Path:
    iio = "bus/i2c/drivers/ina3221x/6-0040/iio:device0"
    return _write(root, {
        f"{iio}/rail_name_0": "POM_5V_IN", f"{iio}/in_power0_input": "1959", f"{iio}/in_voltage0_input": "5032",
        f"{iio}/rail_name_1": "POM_5V_GPU", f"{iio}/in_power1_input": "39",
        f"{iio}/rail_name_2": "POM_5V_CPU", f"{iio}/in_power2_input": "475",
    })  # fmt: skip


def test_an_orin_reads_its_input_rail_from_hwmon(tmp_path: Path) -> None:
    rails = power_rails(str(orin(tmp_path)))
    assert [r["rail"] for r in rails] == ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]  # in7 (no current) left out
    assert rails_mw(rails) == (pytest.approx(5080 * 1216 / 1000), "VDD_IN")


def test_a_nano_reads_its_input_rail_from_iio(tmp_path: Path) -> None:
    rails = power_rails(str(nano(tmp_path)))
    assert [r["rail"] for r in rails] == ["POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"]
    assert rails_mw(rails) == (1959.0, "POM_5V_IN")


def test_without_an_input_rail_the_rails_are_summed_and_without_rails_there_is_nothing(tmp_path: Path) -> None:
    rails = [r for r in power_rails(str(nano(tmp_path))) if r["rail"] != "POM_5V_IN"]
    assert rails_mw(rails) == (39.0 + 475.0, "POM_5V_GPU+POM_5V_CPU")
    assert power_rails(str(tmp_path / "no-sysfs")) == []


def test_the_sampler_follows_the_rail_while_a_run_goes_on(tmp_path: Path) -> None:
    root = nano(tmp_path)
    power = root / "bus/i2c/drivers/ina3221x/6-0040/iio:device0/in_power0_input"
    with PowerSampler(power_rails(str(root)), period_s=0.005) as sampler:
        time.sleep(0.1)
        power.write_text("3959\n")
        time.sleep(0.1)
    result = sampler.result()
    assert result is not None and result["rail"] == "POM_5V_IN" and result["samples"] >= 10
    assert 1959.0 < result["mean_mw"] < 3959.0
