#!/usr/bin/env python3
"""edgelat's device agent: one standard-library file that runs on the device.

The host ships this file to a private temporary directory on the device and starts it as
``python3 -I -u agent.py``. It then speaks JSON lines on stdin/stdout, one request per
line and one reply per request::

    -> {"v": 1, "id": 7, "cmd": "probe", "args": {}}
    <- {"v": 1, "id": 7, "ok": true, "result": {...}}
    <- {"v": 1, "id": 7, "ok": false, "error": {"type": "...", "message": "..."}}

Commands: ``hello`` (protocol handshake; must come first), ``probe``, ``health``,
``bench`` (time a compiled TVM kernel library), ``bench_network`` (time a whole
compiled network), ``remove`` (delete shipped
files), ``bye``. A malformed or unknown request
gets an error reply and the agent keeps serving. Heavy imports (tvm, numpy) happen only
inside the handler that needs them. Nothing here imports the rest of edgelat.

Requires Python >= 3.8 and nothing else.
"""

import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback

PROTOCOL_VERSION = 1
AGENT_VERSION = "0.3.0"
# A flushed repeat is one call: this many at most (a kernel of microseconds would otherwise make thousands).
MAX_FLUSHED_REPEATS = 100


def _read(path, default=None):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def _read_int(path):
    text = _read(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _cpu_list(text):
    """Parse a kernel CPU list such as ``0-3,6`` into [0, 1, 2, 3, 6]."""
    cpus = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            cpus.extend(range(int(lo), int(hi) + 1))
        else:
            cpus.append(int(part))
    return cpus


# ARM's core names by "CPU part", for implementer 0x41 (Arm Ltd.): what a Pi, a Jetson or a phone reports.
_ARM_PARTS = {
    "0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57", "0xd08": "Cortex-A72",
    "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76", "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77",
    "0xd40": "Neoverse-V1", "0xd41": "Cortex-A78", "0xd42": "Cortex-A78AE", "0xd44": "Cortex-X1", "0xd46": "Cortex-A510",
    "0xd47": "Cortex-A710", "0xd48": "Cortex-X2", "0xd49": "Neoverse-N2", "0xd4b": "Cortex-A78C", "0xd4d": "Cortex-A715",
    "0xd4e": "Cortex-X3",
}  # fmt: skip
_ARM_MACHINES = ("aarch64", "arm64", "armv7l", "armv8l", "armv6l")


def _cpuinfo(text=None):
    """The first value of each field of /proc/cpuinfo that names the CPU, plus every distinct ARM core part."""
    info = {"parts": []}
    text = _read("/proc/cpuinfo", "") if text is None else text
    for line in text.splitlines():
        if ":" not in line:
            continue
        key, value = (s.strip() for s in line.split(":", 1))
        if key == "CPU part" and value not in info["parts"]:
            info["parts"].append(value)
        if key in ("model name", "Hardware", "Model", "CPU implementer") and key not in info:
            info[key] = value
    return info


def _cpu_model(text=None, machine=None):
    """The CPU as its /proc/cpuinfo names it: ``model name`` on x86; on ARM the board (``Model`` or
    ``Hardware``) and its cores by ``CPU part``, e.g. "Raspberry Pi 4 Model B Rev 1.4 (4x... Cortex-A72)".

    On an ARM machine only ARM fields count: an emulated one (qemu-user shows the host's x86 cpuinfo)
    reports "unknown" rather than the host's CPU.
    """
    info = _cpuinfo(text)
    machine = machine or platform.machine()
    if machine not in _ARM_MACHINES:
        return info.get("model name") or platform.processor() or machine
    arm = info.get("CPU implementer") == "0x41"
    cores = [(_ARM_PARTS.get(p) if arm else None) or "part %s" % p for p in info["parts"]]
    board = info.get("Model") or info.get("Hardware")
    if not cores:
        return board or "unknown (no ARM fields in /proc/cpuinfo: emulated?)"
    if not arm:
        cores = ["implementer %s %s" % (info.get("CPU implementer", "?"), c) for c in cores]
    return "%s (%s)" % (board, " + ".join(cores)) if board else " + ".join(cores)


def _frequencies():
    cores = []
    for path in sorted(glob.glob("/sys/devices/system/cpu/cpu[0-9]*"), key=lambda p: int(p.rsplit("cpu", 1)[1])):
        cpufreq = os.path.join(path, "cpufreq")
        cur = _read_int(os.path.join(cpufreq, "scaling_cur_freq"))
        cores.append(
            {
                "cpu": int(path.rsplit("cpu", 1)[1]),
                "cur_khz": cur,
                "max_khz": _read_int(os.path.join(cpufreq, "cpuinfo_max_freq")),
                "governor": _read(os.path.join(cpufreq, "scaling_governor")),
            }
        )
    if cores and all(c["cur_khz"] is None for c in cores):
        # No cpufreq (VMs, containers): fall back to what /proc/cpuinfo reports.
        mhz = [line.split(":", 1)[1] for line in _read("/proc/cpuinfo", "").splitlines() if line.startswith("cpu MHz")]
        for core, value in zip(cores, mhz):
            core["cur_khz"] = int(float(value) * 1000)
    return cores


def _meminfo():
    values = {}
    for line in _read("/proc/meminfo", "").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            values[parts[0].rstrip(":")] = int(parts[1])
    return values


def _thermal():
    zones = []
    for path in sorted(glob.glob("/sys/class/thermal/thermal_zone*")):
        temp = _read_int(os.path.join(path, "temp"))
        if temp is not None:
            zones.append({"zone": os.path.basename(path), "type": _read(os.path.join(path, "type")), "temp_c": temp / 1000.0})
    return zones


def _run(argv, timeout=20.0):
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, str(exc)
    return proc.returncode, (proc.stdout.decode(errors="replace") if proc.returncode == 0 else proc.stderr.decode(errors="replace"))


def _tvm_version():
    # In a child process: importing tvm takes seconds and hundreds of MB we do not keep.
    code, out = _run([sys.executable, "-I", "-c", "import tvm; print(tvm.__version__)"], timeout=120.0)
    lines = (out or "").strip().splitlines()
    if code == 0 and lines:
        return lines[-1], None
    return None, lines[-1] if lines else "tvm did not import"


def _gpu():
    gpu = {}
    if shutil.which("nvidia-smi"):
        code, out = _run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"])
        if code == 0:
            gpu["nvidia_smi"] = [line.strip() for line in out.splitlines() if line.strip()]
    model = _read("/proc/device-tree/model")
    if model:
        gpu["device_tree_model"] = model.rstrip("\x00")
    if os.path.isdir("/sys/devices/gpu.0"):  # Jetson's integrated GPU
        gpu["jetson_gpu"] = {
            "load": _read_int("/sys/devices/gpu.0/load"),
            "devfreq": sorted(glob.glob("/sys/devices/gpu.0/devfreq/*")),
        }
    if os.path.isdir("/sys/class/kgsl/kgsl-3d0"):  # Qualcomm Adreno
        gpu["adreno"] = {
            "model": _read("/sys/class/kgsl/kgsl-3d0/gpu_model"),
            "max_freq": _read_int("/sys/class/kgsl/kgsl-3d0/max_gpuclk"),
        }
    mali = glob.glob("/dev/mali*") + glob.glob("/sys/class/misc/mali*")
    if mali:  # Arm Mali
        gpu["mali"] = sorted(mali)
    return gpu


# Rails that carry the whole module's input power, by the names Jetson boards give them (Nano: POM_5V_IN;
# TX1, TX2, Xavier NX, Orin: VDD_IN; some Xavier NX images: 5V_IN). Without one, the rails are summed.
POWER_INPUT_RAILS = ("VDD_IN", "POM_5V_IN", "5V_IN")


def power_rails(root="/sys"):
    """The board's power monitors this process can read, as [{"rail": name, ...files}]: TI INA3221 channels,
    through the mainline hwmon driver (``ina3221``: inN_label, inN_input in mV, currN_input in mA; Jetson Linux
    34+) or NVIDIA's older IIO driver (``ina3221x``: rail_name_N, in_powerN_input in mW; Jetson Linux 32)."""
    rails = []
    for label in sorted(glob.glob(os.path.join(root, "bus/i2c/drivers/ina3221/*/hwmon/hwmon*/in*_label"))):
        folder, name = os.path.split(label)
        channel = name[2:-len("_label")]
        volts, amps = os.path.join(folder, "in%s_input" % channel), os.path.join(folder, "curr%s_input" % channel)
        if os.path.exists(volts) and os.path.exists(amps):  # (in7_label, the sum of shunt voltages, has no current)
            rails.append({"rail": _read(label, "").strip(), "mv": volts, "ma": amps})
    for label in sorted(glob.glob(os.path.join(root, "bus/i2c/drivers/ina3221x/*/iio:device*/rail_name_*"))):
        folder, name = os.path.split(label)
        power = os.path.join(folder, "in_power%s_input" % name.rsplit("_", 1)[1])
        if os.path.exists(power):
            rails.append({"rail": _read(label, "").strip(), "mw": power})
    return rails


def rails_mw(rails):
    """Board power now, in mW: the input rail's if there is one, else the sum of the rails; and what it is."""
    def mw(rail):
        if "mw" in rail:
            return float(_read_int(rail["mw"]) or 0)
        return (_read_int(rail["mv"]) or 0) * (_read_int(rail["ma"]) or 0) / 1000.0

    inputs = [r for r in rails if r["rail"] in POWER_INPUT_RAILS]
    if inputs:
        return mw(inputs[0]), inputs[0]["rail"]
    return sum(mw(r) for r in rails), "+".join(r["rail"] for r in rails)


class PowerSampler(object):
    """Samples board power every ``period_s`` in a thread while a timed run goes on."""

    def __init__(self, rails, period_s=0.01):
        import threading

        self.rails, self.period_s = rails, period_s
        self.samples, self.rail = [], None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.daemon = True

    def _run(self):
        while not self._stop.is_set():
            value, self.rail = rails_mw(self.rails)
            self.samples.append(value)
            self._stop.wait(self.period_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5.0)

    def result(self):
        if not self.samples:
            return None
        return {"rail": self.rail, "mean_mw": sum(self.samples) / len(self.samples), "samples": len(self.samples)}


def handle_probe(args):
    uname = os.uname()
    online = _cpu_list(_read("/sys/devices/system/cpu/online", ""))
    mem = _meminfo()
    tvm_version, tvm_error = _tvm_version()
    return {
        "arch": uname.machine,
        "os": platform.system(),
        "os_release": _os_release(),
        "kernel": uname.release,
        "hostname": uname.nodename,
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "online_cpus": online,
        "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_freq": _frequencies(),
        "mem_total_mb": round(mem.get("MemTotal", 0) / 1024.0, 1),
        "mem_available_mb": round(mem.get("MemAvailable", 0) / 1024.0, 1),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "tvm_version": tvm_version,
        "tvm_error": tvm_error,
        "gpu": _gpu(),
        "thermal": _thermal(),
        "power_rails": [r["rail"] for r in power_rails()],
    }


def _os_release():
    for line in _read("/etc/os-release", "").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return None


def handle_health(args):
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    mem = _meminfo()
    return {
        "time": time.time(),
        "uptime_s": float((_read("/proc/uptime", "0") or "0").split()[0]),
        "loadavg": list(load) if load else None,
        "mem_available_mb": round(mem.get("MemAvailable", 0) / 1024.0, 1),
        "thermal": _thermal(),
        "cpu_freq_khz": [c["cur_khz"] for c in _frequencies()],
    }


_MODULES = {}  # type: dict[str, object]  # library path -> loaded module (a comment: the agent runs on Python 3.8)
# How many libraries this process has loaded. TVM never unloads one (dropping the module does not dlclose it), and
# each keeps its memory mappings, which the kernel caps per process (vm.max_map_count): every reply says the count
# so the host can start a fresh agent long before the cap (AgentSession.max_libraries).
_LOADED = [0]


def _load(path):
    import tvm

    module = tvm.runtime.load_module(path)
    _LOADED[0] += 1
    return module


def _private_cache_bytes(root="/sys/devices/system/cpu/cpu0/cache"):
    """Bytes of the data caches below the last level of CPU 0 (its L1d and, where an L3 follows, its L2)."""
    levels = []
    for index in sorted(glob.glob(os.path.join(root, "index*"))):
        kind, level, size = _read(os.path.join(index, "type")), _read_int(os.path.join(index, "level")), _read(os.path.join(index, "size"))
        if kind in ("Data", "Unified") and level and size:
            scale = {"K": 1024, "M": 1024 * 1024}.get(size[-1], 1)
            levels.append((level, int(size.rstrip("KM")) * scale))
    if not levels:
        return 0
    last = max(level for level, _ in levels)
    return sum(size for level, size in levels if level < last)


_EVICT = []  # type: list


def _evict_private():
    """The f_preproc name that writes over twice the private caches' bytes before each repeat: what a kernel
    finds in a network that fits the last-level cache (the kernels between two calls of it evicted it from the
    core's own caches, but not from the shared last level)."""
    import numpy as np
    import tvm

    if not _EVICT:
        buffer = np.zeros(max(2 * _private_cache_bytes(), 1 << 20) // 8)

        def evict(*args):
            np.add(buffer, 1.0, out=buffer)

        tvm.register_global_func("edgelat.evict_private", evict, override=True)
        _EVICT.append(evict)
    return "edgelat.evict_private"


def _state():
    """Temperatures and frequencies, cheap enough to read around every kernel."""
    return {"t": time.time(), "thermal": [z["temp_c"] for z in _thermal()], "cpu_freq_khz": [c["cur_khz"] for c in _frequencies()]}


def handle_bench(args):
    """Time the kernels of one compiled library with TVM's time evaluator.

    args: ``lib`` (path on this device), ``kernels`` ([{"name", "args": [[shape, dtype], ...]}]),
    ``repeat``, ``min_repeat_ms`` (``number`` is chosen so a repeat lasts at least this),
    ``caches``: "warm" (repeated calls), "flushed" (each repeat one call, after the arguments but the first
    are flushed from every cache level) or "llc" (each repeat one call, after the core's private caches are
    written over: the arguments come from the last level); ``flush`` (true: "flushed") is the older form,
    ``cooldown_ms`` (sleep before timing).
    Returns per-kernel seconds-per-call of every repeat, the ``number`` used, and the device
    state before and after.
    """
    import numpy as np  # heavy imports only here: the rest of the agent needs none
    import tvm

    lib = args["lib"]
    repeat = int(args.get("repeat", 7))
    min_repeat_ms = float(args.get("min_repeat_ms", 40.0))
    caches = args.get("caches") or ("flushed" if args.get("flush") else "warm")
    if caches not in ("warm", "flushed", "llc"):
        raise ValueError("caches must be warm, flushed or llc, not %r" % (caches,))
    flush = caches != "warm"
    cooldown = float(args.get("cooldown_ms", 0.0)) / 1000.0
    if cooldown > 0:
        time.sleep(cooldown)
    module = _MODULES.get(lib)
    if module is None:
        if len(_MODULES) > 64:
            _MODULES.clear()  # (frees the Python objects only: see _LOADED)
        module = _MODULES[lib] = _load(lib)
    dev = tvm.cpu(0)
    rng = np.random.default_rng(0)
    before = _state()
    prepared = []
    for kernel in args["kernels"]:
        name = kernel["name"]
        arrays = [
            tvm.runtime.tensor(rng.uniform(0.1, 1.0, size=[int(d) for d in shape]).astype(dtype), dev) for shape, dtype in kernel["args"]
        ]
        func = module[name]
        func(*arrays)  # warm-up: page in code and data
        start = time.perf_counter()
        func(*arrays)
        once = max(time.perf_counter() - start, 1e-7)
        prepared.append((name, arrays, max(1, int(min_repeat_ms / 1000.0 / once + 0.999))))
    if flush:
        # Each repeat is one call after every argument but the first (the input, which the previous kernel of a
        # network has just written) is flushed from every cache level: what a kernel meets inside a network, whose
        # weights and outputs other kernels have evicted. As many repeats as the fastest kernel's warm repeat has
        # calls (capped), the same for every kernel of the request, whose repeats are summed one by one.
        repeat = min(max(repeat, *(number for _, _, number in prepared)), MAX_FLUSHED_REPEATS)
        prepared = [(name, arrays, 1) for name, arrays, _ in prepared]
    preproc = _evict_private() if caches == "llc" else "cache_flush_cpu_non_first_arg" if caches == "flushed" else ""
    results = []
    for name, arrays, number in prepared:
        timer = module.time_evaluator(name, dev, number=number, repeat=repeat, f_preproc=preproc)
        res = timer(*arrays)
        results.append({"name": name, "number": number, "seconds": [float(r) for r in res.results]})
    return {"kernels": results, "state_before": before, "state_after": _state(), "threads": os.environ.get("TVM_NUM_THREADS")}


def handle_bench_network(args):
    """Time a whole compiled network (a Relax VM library) end to end.

    args: ``lib``, ``inputs`` ([[shape, dtype], ...]), ``repeat``, ``min_repeat_ms``,
    ``per_kernel`` (also list every kernel the VM calls, timed in place, for one run).
    """
    import numpy as np
    import tvm
    from tvm.runtime.vm import VirtualMachine

    dev = tvm.cpu(0)
    vm = VirtualMachine(_load(args["lib"]), dev)
    rng = np.random.default_rng(0)
    inputs = [tvm.runtime.tensor(rng.uniform(0.1, 1.0, size=[int(d) for d in shape]).astype(dtype), dev) for shape, dtype in args["inputs"]]
    vm.set_input("main", *inputs)
    vm.invoke_stateful("main")  # warm-up
    start = time.perf_counter()
    vm.invoke_stateful("main")
    once = max(time.perf_counter() - start, 1e-7)
    number = max(1, int(float(args.get("min_repeat_ms", 40.0)) / 1000.0 / once + 0.999))
    before = _state()
    rails = power_rails()
    power = None
    if rails:
        with PowerSampler(rails) as sampler:
            res = vm.time_evaluator("invoke_stateful", dev, number=number, repeat=int(args.get("repeat", 7)))("main")
        power = sampler.result()
    else:
        res = vm.time_evaluator("invoke_stateful", dev, number=number, repeat=int(args.get("repeat", 7)))("main")
    result = {"seconds": [float(r) for r in res.results], "number": number, "state_before": before, "state_after": _state(), "power": power}
    if args.get("per_kernel"):
        calls = []
        started = {}

        def instrument(func, name, before_run, ret_val, *call_args):
            if before_run:
                started[name] = time.perf_counter()
            elif not name.startswith("vm.builtin"):
                calls.append([name, time.perf_counter() - started.get(name, time.perf_counter())])
            return 0

        vm.set_instrument(instrument)
        vm.invoke_stateful("main")
        result["kernels"] = calls
    return result


def _status_kb(field):
    """A line of /proc/self/status in kB (VmRSS, VmHWM), or None where there is no /proc."""
    for line in (_read("/proc/self/status") or "").splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def _peak_kb():
    import resource

    return _status_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux


def memory_child(lib, inputs):
    """Run in a fresh interpreter (``agent.py --memory LIB INPUTS``): load the network, run it twice, and say
    the process's resident memory with the runtime alone, and its peak (VmHWM, reset after the imports
    where the kernel allows it, else the peak since start)."""
    import numpy as np
    import tvm
    from tvm.runtime.vm import VirtualMachine

    dev = tvm.cpu(0)
    tvm.runtime.tensor(np.zeros(1, "float32"), dev)  # the runtime initialised
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident size (Linux 4.0+)
    except (IOError, OSError):
        pass
    runtime_kb = _status_kb("VmRSS") or _peak_kb()
    vm = VirtualMachine(tvm.runtime.load_module(lib), dev)
    rng = np.random.default_rng(0)
    tensors = [tvm.runtime.tensor(rng.uniform(0.1, 1.0, size=[int(d) for d in shape]).astype(dtype), dev) for shape, dtype in inputs]
    loaded_kb = _status_kb("VmRSS")
    for _ in range(2):
        vm["main"](*tensors)
    return {"runtime_mb": runtime_kb / 1024.0, "loaded_mb": None if loaded_kb is None else loaded_kb / 1024.0, "peak_mb": _peak_kb() / 1024.0}


def handle_memory_network(args):
    """Peak resident memory of running a network (a Relax VM library), measured in a fresh process: this
    agent's own memory holds whatever it loaded and timed before.

    args: ``lib``, ``inputs`` ([[shape, dtype], ...]). Returns runtime_mb (the process with Python and TVM's
    runtime loaded), loaded_mb (and the library and inputs) and peak_mb (after running it)."""
    argv = [sys.executable, os.path.abspath(__file__), "--memory", args["lib"], json.dumps(args["inputs"])]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=float(args.get("timeout", 600)))
    lines = proc.stdout.decode("utf-8", "replace").strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError("the memory run failed (exit %s): %s" % (proc.returncode, proc.stderr.decode("utf-8", "replace")[-1500:]))
    return json.loads(lines[-1])


def handle_run(args):
    """Run a compiled library once on the host's inputs and save what it computes (to check it is right).

    args: ``lib``; ``inputs`` (paths of .npy files in the agent's directory); and either ``kernel`` (a
    function's name) with ``outputs`` ([[shape, dtype], ...], the buffers it writes after its inputs),
    or neither (a Relax VM network: ``main`` returns its outputs). Returns the paths of .npy outputs.
    """
    import numpy as np
    import tvm

    here = os.path.dirname(os.path.abspath(__file__))
    dev = tvm.cpu(0)
    inputs = [tvm.runtime.tensor(np.load(_inside(here, p)), dev) for p in args["inputs"]]
    module = _load(_inside(here, args["lib"]))
    if args.get("kernel"):
        outs = [tvm.runtime.tensor(np.zeros([int(d) for d in shape], dtype=dtype), dev) for shape, dtype in args["outputs"]]
        module[args["kernel"]](*inputs, *outs)
    else:
        from tvm.runtime.vm import VirtualMachine

        result = VirtualMachine(module, dev)["main"](*inputs)
        outs = list(result) if isinstance(result, (list, tuple)) or type(result).__name__ == "Array" else [result]
    paths = []
    for i, out in enumerate(outs):
        path = os.path.join(here, "out-%d.npy" % i)
        np.save(path, out.numpy())
        paths.append(path)
    return {"outputs": paths}


def _inside(here, path):
    full = os.path.abspath(path)
    if os.path.dirname(full) != here:
        raise ValueError("refusing %r: outside the agent directory" % path)
    return full


def handle_remove(args):
    """Delete files the host shipped (only inside the agent's own directory)."""
    here = os.path.dirname(os.path.abspath(__file__))
    removed = 0
    for path in args.get("paths", []):
        full = os.path.abspath(path)
        if os.path.dirname(full) != here:
            raise ValueError("refusing to remove %r: outside the agent directory" % path)
        _MODULES.pop(path, None)
        if os.path.exists(full):
            os.remove(full)
            removed += 1
    return {"removed": removed}


HANDLERS = {
    "probe": handle_probe,
    "health": handle_health,
    "bench": handle_bench,
    "bench_network": handle_bench_network,
    "memory_network": handle_memory_network,
    "remove": handle_remove,
    "run": handle_run,
}


class Agent(object):
    def __init__(self, out):
        self.out = out
        self.greeted = False
        self.reaped = []  # stale agent directories removed at start

    def reply(self, req_id, result=None, error=None):
        msg = {"v": PROTOCOL_VERSION, "id": req_id, "libraries": _LOADED[0]}
        if error is None:
            msg["ok"] = True
            msg["result"] = result
        else:
            msg["ok"] = False
            msg["error"] = error
        self.out.write(json.dumps(msg) + "\n")
        self.out.flush()

    def error(self, req_id, kind, message, **extra):
        err = {"type": kind, "message": message}
        err.update(extra)
        self.reply(req_id, error=err)

    def handle_line(self, line):
        """Serve one request line; returns False when the host said bye."""
        try:
            req = json.loads(line)
        except ValueError as exc:
            self.error(None, "bad_request", "not JSON: %s" % exc)
            return True
        if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
            self.error(None, "bad_request", "a request is a JSON object with a string 'cmd'")
            return True
        req_id = req.get("id")
        cmd = req["cmd"]
        args = req.get("args") or {}
        if not isinstance(args, dict):
            self.error(req_id, "bad_request", "'args' must be an object")
            return True
        if cmd == "hello":
            wanted = args.get("protocol")
            if wanted != PROTOCOL_VERSION:
                self.error(
                    req_id,
                    "protocol_mismatch",
                    "host speaks protocol %r, agent speaks %d" % (wanted, PROTOCOL_VERSION),
                    agent_protocol=PROTOCOL_VERSION,
                )
                return True
            self.greeted = True
            self.reply(
                req_id,
                {
                    "protocol": PROTOCOL_VERSION,
                    "agent_version": AGENT_VERSION,
                    "python": platform.python_version(),
                    "pid": os.getpid(),
                    "reaped": len(self.reaped),
                },
            )
            return True
        if cmd == "bye":
            self.reply(req_id, {"bye": True})
            return False
        if not self.greeted:
            self.error(req_id, "no_hello", "send 'hello' with the protocol version first")
            return True
        handler = HANDLERS.get(cmd)
        if handler is None:
            self.error(
                req_id, "unknown_command", "unknown command %r; known: %s" % (cmd, ", ".join(sorted(list(HANDLERS) + ["hello", "bye"])))
            )
            return True
        try:
            result = handler(args)
        except NotImplementedError as exc:
            self.error(req_id, "not_implemented", str(exc))
        except Exception as exc:  # a handler failure is a reply, never the end of the agent
            self.error(req_id, type(exc).__name__, str(exc), traceback=traceback.format_exc()[-2000:])
        else:
            self.reply(req_id, result)
        return True


# The host ships the agent into a fresh ``edgelat-agent.*`` directory and removes it when done. A host
# that dies mid-campaign cannot: a later agent removes such directories once no live process holds them
# and they are older than this lease (a host may be between creating one and starting its agent).
DIR_PREFIX = "edgelat-agent."
PID_FILE = "agent.pid"
LEASE_S = 600.0


def _holds(pid, directory):
    """Whether process ``pid`` is alive and runs from ``directory`` (not another process that got its number)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, someone else's: leave it
    cmdline = _read("/proc/%d/cmdline" % pid)
    return cmdline is None or directory in cmdline


def reap_stale(own_dir, lease_s=LEASE_S):
    """Remove this user's agent directories beside ``own_dir`` that no live agent holds; returns them."""
    removed = []
    now = time.time()
    for directory in sorted(glob.glob(os.path.join(os.path.dirname(own_dir), DIR_PREFIX + "*"))):
        if directory == own_dir or os.path.islink(directory) or not os.path.isdir(directory):
            continue
        pid_path = os.path.join(directory, PID_FILE)
        try:
            st = os.stat(directory)
            last = max(st.st_mtime, os.stat(pid_path).st_mtime if os.path.exists(pid_path) else 0.0)
        except OSError:
            continue
        if st.st_uid != os.getuid() or now - last < lease_s:
            continue
        pid = _read_int(pid_path)
        if pid is not None and _holds(pid, directory):
            continue
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory)
    return removed


def _claim_directory():
    """Mark this agent's directory as held (its pid) and reap stale ones; the directories removed."""
    own_dir = os.path.dirname(os.path.abspath(__file__))
    if not os.path.basename(own_dir).startswith(DIR_PREFIX):
        return []  # run from elsewhere (a checkout, a test): nothing of ours around it
    with open(os.path.join(own_dir, PID_FILE), "w") as f:
        f.write("%d\n" % os.getpid())
    try:
        lease_s = float(os.environ.get("EDGELAT_AGENT_LEASE_S", LEASE_S))
    except ValueError:
        lease_s = LEASE_S
    return reap_stale(own_dir, lease_s)


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--memory":  # a child of handle_memory_network
        print(json.dumps(memory_child(sys.argv[2], json.loads(sys.argv[3]))))
        return 0
    # Replies go to the real stdout; anything a library prints goes to stderr instead.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    agent = Agent(out)
    agent.reaped = _claim_directory()
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        if not agent.handle_line(line):
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
