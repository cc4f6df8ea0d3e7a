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
AGENT_VERSION = "0.1.0"


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


def _cpuinfo():
    info = {}
    text = _read("/proc/cpuinfo", "")
    for line in text.splitlines():
        if ":" not in line:
            continue
        key, value = (s.strip() for s in line.split(":", 1))
        if key in ("model name", "Hardware", "Model", "CPU part", "CPU implementer") and key not in info:
            info[key] = value
    return info


def _cpu_model():
    info = _cpuinfo()
    for key in ("model name", "Model", "Hardware"):
        if key in info:
            return info[key]
    if "CPU part" in info:
        return "ARM implementer %s part %s" % (info.get("CPU implementer", "?"), info["CPU part"])
    return platform.processor() or platform.machine()


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


def _state():
    """Temperatures and frequencies, cheap enough to read around every kernel."""
    return {"t": time.time(), "thermal": [z["temp_c"] for z in _thermal()], "cpu_freq_khz": [c["cur_khz"] for c in _frequencies()]}


def handle_bench(args):
    """Time the kernels of one compiled library with TVM's time evaluator.

    args: ``lib`` (path on this device), ``kernels`` ([{"name", "args": [[shape, dtype], ...]}]),
    ``repeat``, ``min_repeat_ms`` (``number`` is chosen so a repeat lasts at least this),
    ``flush`` (flush caches before each repeat), ``cooldown_ms`` (sleep before timing).
    Returns per-kernel seconds-per-call of every repeat, the ``number`` used, and the device
    state before and after.
    """
    import numpy as np  # heavy imports only here: the rest of the agent needs none
    import tvm

    lib = args["lib"]
    repeat = int(args.get("repeat", 7))
    min_repeat_ms = float(args.get("min_repeat_ms", 40.0))
    flush = bool(args.get("flush", False))
    cooldown = float(args.get("cooldown_ms", 0.0)) / 1000.0
    if cooldown > 0:
        time.sleep(cooldown)
    module = _MODULES.get(lib)
    if module is None:
        if len(_MODULES) > 64:
            _MODULES.clear()
        module = _MODULES[lib] = tvm.runtime.load_module(lib)
    dev = tvm.cpu(0)
    rng = np.random.default_rng(0)
    before = _state()
    results = []
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
        number = max(1, int(min_repeat_ms / 1000.0 / once + 0.999))
        timer = module.time_evaluator(name, dev, number=number, repeat=repeat, f_preproc="cache_flush_cpu_non_first_arg" if flush else "")
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
    vm = VirtualMachine(tvm.runtime.load_module(args["lib"]), dev)
    rng = np.random.default_rng(0)
    inputs = [tvm.runtime.tensor(rng.uniform(0.1, 1.0, size=[int(d) for d in shape]).astype(dtype), dev) for shape, dtype in args["inputs"]]
    vm.set_input("main", *inputs)
    vm.invoke_stateful("main")  # warm-up
    start = time.perf_counter()
    vm.invoke_stateful("main")
    once = max(time.perf_counter() - start, 1e-7)
    number = max(1, int(float(args.get("min_repeat_ms", 40.0)) / 1000.0 / once + 0.999))
    before = _state()
    res = vm.time_evaluator("invoke_stateful", dev, number=number, repeat=int(args.get("repeat", 7)))("main")
    result = {"seconds": [float(r) for r in res.results], "number": number, "state_before": before, "state_after": _state()}
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
    "remove": handle_remove,
}


class Agent(object):
    def __init__(self, out):
        self.out = out
        self.greeted = False

    def reply(self, req_id, result=None, error=None):
        msg = {"v": PROTOCOL_VERSION, "id": req_id}
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
                {"protocol": PROTOCOL_VERSION, "agent_version": AGENT_VERSION, "python": platform.python_version(), "pid": os.getpid()},
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


def main():
    # Replies go to the real stdout; anything a library prints goes to stderr instead.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    agent = Agent(out)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        if not agent.handle_line(line):
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
