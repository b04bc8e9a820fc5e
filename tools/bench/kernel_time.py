#!/usr/bin/env python3
"""tools/bench/kernel_time.py — a program's kernels one by one under Nsight
Compute: how much of a step is kernel execution and how much is the time
between kernels (launch, dependency wait, ramp-up), by comparing the summed
kernel durations with the step time `msac bench` measures for the whole
program (CUDA graph).

On the GPU machine (ncu on PATH; serialises kernels, so nothing overlaps):
    ncu --csv --metrics gpu__time_duration.sum --launch-skip P --launch-count N \
        msac bench PLAN --program decode --batch 1 --seq 1 --warmup 0 --iters 1 > ncu.csv
    python3 tools/bench/kernel_time.py ncu.csv --step-us 400

N is the program's launch count and P the prefill program's (`msac info
PLAN` lists both): `msac bench` runs one prefill call before it times a
program, so the kernels after the first P are one whole run of the program
timed. (Without --launch-skip the table is the prefill's first N kernels.)"""
import argparse
import collections
import csv
import io
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", help="ncu --csv output with gpu__time_duration.sum")
    ap.add_argument("--step-us", type=float, help="the whole program's time from msac bench, µs")
    a = ap.parse_args()
    text = open(a.csv).read()
    start = text.find('"ID"')
    if start < 0:
        sys.exit("kernel_time: no ncu CSV table in %s" % a.csv)
    by = collections.defaultdict(list)
    total = 0.0
    n = 0
    for r in csv.DictReader(io.StringIO(text[start:])):
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        v = float(r["Metric Value"].replace(",", ""))
        unit = r.get("Metric Unit", "nsecond")
        us = v / 1e3 if unit.startswith("n") else v if unit.startswith("u") else v * 1e3
        by[r["Kernel Name"]].append(us)
        total += us
        n += 1
    print("%d kernels, %.1f us of kernel execution" % (n, total))
    if a.step_us:
        print("step %.1f us: kernels %.0f %%, between kernels %.1f us (%.2f us per launch)"
              % (a.step_us, 100 * total / a.step_us, a.step_us - total, (a.step_us - total) / max(n, 1)))
    print("%-64s %5s %9s %8s" % ("kernel", "count", "total us", "each us"))
    for name, v in sorted(by.items(), key=lambda x: -sum(x[1])):
        print("%-64s %5d %9.1f %8.2f" % (name[:64], len(v), sum(v), sum(v) / len(v)))


if __name__ == "__main__":
    main()
