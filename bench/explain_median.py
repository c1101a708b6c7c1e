#!/usr/bin/env python3
"""Execution time of SQL statements in PostgreSQL, interleaved, as medians.

    SOCK=<socket dir> [N=15] [SUBS="srv='s000000' login='bulk'"] [PREFIX=cte.sql] \
        bench/explain_median.py A.sql B.sql ...

Each file holds one statement whose parameters are written :name; SUBS gives their values, and
PREFIX a file put before each (a shared WITH clause: bench/sql/granted_keys_reach.sql).
Runs `EXPLAIN (ANALYZE, TIMING OFF)` of every file in turn, N rounds, on the database
`keyportal` (a data set kept by `SCALE_KEEP=1 bench/scale.sh`), and prints the median, min and
max execution and planning times of each. Interleaving puts every variant under the same
machine load, which on this shared machine drifts by up to 2x within an hour.
"""
import os
import re
import statistics
import subprocess
import sys

sock = os.environ["SOCK"]
rounds = int(os.environ.get("N", "15"))
subs = dict(a.split("=", 1) for a in os.environ.get("SUBS", "srv='s000000' login='bulk'").split())
prefix = open(os.environ["PREFIX"]).read().strip() + "\n" if os.environ.get("PREFIX") else ""
texts = {}
for name in sys.argv[1:]:
    text = prefix + open(name).read().strip().rstrip(";")
    for key, value in subs.items():
        text = text.replace(":" + key, value)
    texts[name] = text
script = [f"\\echo VARIANT {name}\nEXPLAIN (ANALYZE, TIMING OFF) {text};"
          for _ in range(rounds) for name, text in texts.items()]
out = subprocess.run(["psql", "-h", sock, "-U", "postgres", "-d", "keyportal", "-X", "-q"],
                     input="\n".join(script), capture_output=True, text=True, check=True).stdout
execution = {name: [] for name in texts}
planning = {name: [] for name in texts}
current = None
for line in out.splitlines():
    if m := re.match(r"VARIANT (\S+)", line):
        current = m.group(1)
    elif m := re.search(r"Execution Time: ([\d.]+)", line):
        execution[current].append(float(m.group(1)))
    elif m := re.search(r"Planning Time: ([\d.]+)", line):
        planning[current].append(float(m.group(1)))
for name in texts:
    e = sorted(execution[name])
    if not e:
        sys.exit(f"{name}: no plan came back")
    print(f"{name}: execution median {statistics.median(e):.2f} ms (min {e[0]:.2f}, max {e[-1]:.2f}), "
          f"planning median {statistics.median(planning[name]):.2f} ms, {len(e)} runs")
