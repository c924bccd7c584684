#!/usr/bin/env python3
"""Per-kernel table from an Nsight Compute CSV (--metrics gpu__time_duration.sum --csv):
total, count and mean microseconds per kernel name, biggest first.
usage: ncu-summary.py FILE.csv [SKIP_FIRST_N_LAUNCHES]"""
import collections
import csv
import sys

rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
hdr, data = rows[0], rows[1:]
ki, mi, vi, ui = (hdr.index(c) for c in ("Kernel Name", "Metric Name", "Metric Value", "Metric Unit"))
skip = int(sys.argv[2]) if len(sys.argv) > 2 else 0
data = [r for r in data if r[mi] == "gpu__time_duration.sum"][skip:]
total = collections.defaultdict(float)
count = collections.Counter()
for r in data:
    v, unit = float(r[vi].replace(",", "")), r[ui]
    us = v / 1000 if unit in ("ns", "nsecond") else v * 1000 if unit in ("ms", "msecond") else v
    name = r[ki].split("(")[0][:80]
    total[name] += us
    count[name] += 1
print(f"kernels {len(data)}  total {sum(total.values()):.1f} us")
for name, t in sorted(total.items(), key=lambda x: -x[1]):
    print(f"{t:10.1f} us {count[name]:6d} x {t / count[name]:8.2f} us  {name}")
