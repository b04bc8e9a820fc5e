"""timing.py — how tools/bench/peers.py measures: peers in this process with
CUDA events (median of many calls after warm-up, inputs rotated when one set
would fit in L2), ours by running `msac bench --json` in a subprocess.
"""
import json
import math
import os
import statistics
import subprocess

import torch

L2_BYTES = 50 * 1024 * 1024  # H100: 50 MB of L2
ROTATE_BYTES = 4 * L2_BYTES  # rotate through at least this much input


def tensor_bytes(obj):
    """Bytes of the tensors in a (nested) tuple/list/dict of arguments."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(o) for o in obj)
    if isinstance(obj, dict):
        return sum(tensor_bytes(o) for o in obj.values())
    return 0


def input_sets(make, max_sets=64):
    """Calls make() (fresh random inputs) once, or as many times as it takes
    for the sets together to exceed ROTATE_BYTES when one set would fit in L2."""
    first = make()
    size = tensor_bytes(first)
    n = 1 if size > L2_BYTES else min(max_sets, math.ceil(ROTATE_BYTES / max(size, 1)))
    return [first] + [make() for _ in range(n - 1)], size


def time_cuda(fn, sets, warmup, iters):
    """Median milliseconds of fn(*args) over `iters` calls (after `warmup`
    untimed calls), cycling through the argument tuples in `sets`; each call
    is bracketed by two CUDA events on the current stream, so host time spent
    inside the call (launch overhead) counts and time between calls does not."""
    for i in range(warmup):
        fn(*sets[i % len(sets)])
    torch.cuda.synchronize()
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)]
    for i, (start, end) in enumerate(ev):
        args = sets[(warmup + i) % len(sets)]
        start.record()
        fn(*args)
        end.record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in ev)


def lib_env(msac):
    """Environment for running a carried build's msac (BUILD/tools/msac): its
    shared libraries are in BUILD, BUILD/runtime and BUILD/devlibs."""
    build = os.path.dirname(os.path.dirname(os.path.abspath(msac)))
    env = dict(os.environ)
    dirs = [os.path.join(build, d) for d in ("devlibs", "runtime")] + [build]
    old = env.get("LD_LIBRARY_PATH", "")
    env["LD_LIBRARY_PATH"] = ":".join(dirs + ([old] if old else []))
    return env


def run_msac_bench(msac, model, json_path, args, log_path):
    """Runs `msac bench MODEL --json JSON ARGS...`; returns the parsed JSON.
    The text report goes to log_path; a failure raises with its tail."""
    cmd = [msac, "bench", model, "--json", json_path] + [str(a) for a in args]
    with open(log_path, "w") as log:
        r = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=lib_env(msac), timeout=900)
    if r.returncode != 0:
        with open(log_path) as log:
            tail = log.read()[-2000:]
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}:\n{tail}")
    with open(json_path) as f:
        return json.load(f)


def launches_named(program, prefix):
    """The launches of a `msac bench` JSON program whose kernel name starts with prefix."""
    return [l for l in program["launches"] if l["kernel"].startswith(prefix)]


def roofline_pct(ms, flops, nbytes, peak_tflops, peak_gbs):
    """100 * max(flops / peak, bytes / bandwidth) / time."""
    if ms <= 0:
        return float("nan")
    t = max(flops / (peak_tflops * 1e12), nbytes / (peak_gbs * 1e9))
    return 100.0 * t / (ms / 1e3)
