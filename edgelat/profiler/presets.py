"""Device presets: what edgelat knows about a kind of device before it probes one.

A preset maps a device kind to the TVM target it compiles for, the compiler that links
kernels for it, and the thread count it measures with by default. A new device kind is
one :func:`register_preset` call here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgelat.errors import UnknownPresetError
from edgelat.registry import Registry

__all__ = ["PRESETS", "DevicePreset", "get_preset", "list_presets", "register_preset"]

Target = dict[str, Any]


@dataclass(frozen=True)
class DevicePreset:
    """Everything a device kind implies for building and timing kernels."""

    name: str
    description: str
    # TVM target dict for the CPU; a callable resolves it lazily (``local`` asks LLVM).
    cpu_target: Target | Callable[[], Target]
    # Executable that links shared libraries for the device; None means the host's compiler.
    cross_compiler: str | None = None
    # Threads a measurement uses unless the user says otherwise (1 on a shared host: less noise).
    default_threads: int = 1
    # TVM target dict of the device's GPU, if it has one TVM can drive.
    gpu_target: Target | None = None
    # Machine (``uname -m``) the device reports; used to check builds and probes agree.
    arch: str = "aarch64"
    # Extra notes a user should read before relying on this preset.
    notes: tuple[str, ...] = field(default_factory=tuple)

    def target(self) -> Target:
        """The resolved TVM target dict of the device's CPU."""
        return dict(self.cpu_target() if callable(self.cpu_target) else self.cpu_target)


PRESETS: Registry[DevicePreset] = Registry("preset", error=UnknownPresetError, sort=True)


def register_preset(preset: DevicePreset) -> DevicePreset:
    return PRESETS.register(preset.name, preset)


def get_preset(name: str) -> DevicePreset:
    return PRESETS.get(name)


def list_presets() -> list[str]:
    return PRESETS.names()


@functools.cache
def _host_target() -> Target:
    import platform

    from tvm.target import codegen

    target: Target = {"kind": "llvm", "mcpu": str(codegen.llvm_get_system_cpu())}
    if platform.machine() == "aarch64":
        target["mtriple"] = "aarch64-linux-gnu"
    return target


def _arm(mcpu: str, *, mattr: tuple[str, ...] = ("+neon",), triple: str = "aarch64-linux-gnu") -> Target:
    return {"kind": "llvm", "mtriple": triple, "mcpu": mcpu, "mattr": list(mattr)}


register_preset(
    DevicePreset(
        name="local",
        description="this host's CPU, measured through the agent like any other device",
        cpu_target=_host_target,
        cross_compiler=None,
        default_threads=1,
        arch=__import__("platform").machine(),
    )
)
register_preset(
    DevicePreset(
        name="rpi4",
        description="Raspberry Pi 4 (4x Cortex-A72, 64-bit OS)",
        cpu_target=_arm("cortex-a72"),
        cross_compiler="aarch64-linux-gnu-g++",
        default_threads=4,
    )
)
register_preset(
    DevicePreset(
        name="rpi5",
        description="Raspberry Pi 5 (4x Cortex-A76, 64-bit OS)",
        cpu_target=_arm("cortex-a76", mattr=("+neon", "+dotprod", "+fullfp16")),
        cross_compiler="aarch64-linux-gnu-g++",
        default_threads=4,
    )
)
register_preset(
    DevicePreset(
        name="jetson-nano",
        description="NVIDIA Jetson Nano (4x Cortex-A57 + 128-core Maxwell GPU)",
        cpu_target=_arm("cortex-a57"),
        cross_compiler="aarch64-linux-gnu-g++",
        default_threads=4,
        gpu_target={"kind": "cuda", "arch": "sm_53", "host": _arm("cortex-a57")},
        notes=("The apache-tvm wheel's CUDA runtime needs libcudart 13; JetPack 4 ships CUDA 10.",),
    )
)
register_preset(
    DevicePreset(
        name="jetson-orin",
        description="NVIDIA Jetson Orin (Cortex-A78AE + Ampere GPU)",
        cpu_target=_arm("cortex-a78", mattr=("+neon", "+dotprod", "+fullfp16")),
        cross_compiler="aarch64-linux-gnu-g++",
        default_threads=6,
        gpu_target={"kind": "cuda", "arch": "sm_87", "host": _arm("cortex-a78", mattr=("+neon", "+dotprod", "+fullfp16"))},
        notes=("The apache-tvm wheel's CUDA runtime needs libcudart 13; JetPack 6 ships CUDA 12.",),
    )
)
register_preset(
    DevicePreset(
        name="android-arm64",
        description="Android phone, Cortex-A76-class big cores + OpenCL GPU (Adreno/Mali)",
        cpu_target=_arm("cortex-a76", mattr=("+neon", "+dotprod", "+fullfp16"), triple="aarch64-linux-android"),
        cross_compiler="aarch64-linux-android-clang++",
        default_threads=1,
        gpu_target={"kind": "opencl", "device": "adreno", "host": _arm("cortex-a76", triple="aarch64-linux-android")},
        notes=("Linking needs the Android NDK (TVM_NDK_CC); the device needs a TVM runtime built with OpenCL.",),
    )
)
# A device known only from end-to-end measurements (`edgelat adapt`): nothing to connect to or
# build for; it is predicted through another device's kernel models.
ADAPTED = "adapted"
register_preset(
    DevicePreset(
        name=ADAPTED,
        description="known from end-to-end latencies only (edgelat adapt); predicted, never profiled or measured",
        cpu_target={"kind": "llvm"},
        arch="unknown",
    )
)
