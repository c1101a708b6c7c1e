#!/usr/bin/env python3
"""Runs a command and prints the CPU the whole machine spent while it ran, by process name.

    bench/cpu_split.py [--per N | --per wrk | --per pgbench] -- COMMAND ...

Reads /proc before and after: every process's user+system time, and the machine's busy and
idle time over all cores. With --per N (say the request count wrk printed), also prints each
group's CPU per unit in ms, so a row's cost can be set against its budget on this machine
(two cores give 2 s of CPU per second: 5,000 req/s leaves 0.4 ms of CPU per request for
everything, wrk included). `--per wrk` takes N from the "N requests in" line wrk prints,
`--per pgbench` from pgbench's "actually processed: N".
The command's own CPU (wrk's, say) is counted by its name. Processes are grouped by name, every
process of that name (all PostgreSQL clusters on the machine, say), so run it on a quiet
machine. What ended inside the run (a pgbench connection's backend, say), interrupts and
accounting skew are the signed remainder of the machine's busy time.
"""
import os
import re
import subprocess
import sys

TICK = os.sysconf("SC_CLK_TCK")


def processes():
    """(pid, start time) -> (name, cpu seconds) for every live process; the start time tells
    a reused pid from the process that had it before."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # comm may hold spaces and parentheses: split at the last ')'.
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[(int(pid), fields[19])] = (group(name), (int(fields[11]) + int(fields[12])) / TICK)
    return out


def group(name):
    for prefix, label in (("postgres", "postgres"), ("kp-", "keyportal"), ("keyportal", "keyportal"),
                          ("tokio-runtime", "keyportal"), ("wrk", "wrk"), ("curl", "curl")):
        if name.startswith(prefix):
            return label
    return name


def machine():
    """(busy, idle, steal) seconds summed over all cores; steal is time the hypervisor gave
    to other guests, counted in neither."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return (sum(v[:7]) - idle) / TICK, idle / TICK, v[7] / TICK


def main():
    args = sys.argv[1:]
    per = None
    if args[:1] == ["--per"]:
        per = args[1]
        args = args[2:]
    if args[:1] == ["--"]:
        args = args[1:]
    before, (busy0, idle0, steal0) = processes(), machine()
    child = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    output = child.stdout.read()
    sys.stdout.write(output)
    sys.stdout.flush()
    _, status, usage = os.wait4(child.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    after, (busy1, idle1, steal1) = processes(), machine()
    # The command itself has ended: its CPU comes from wait4, under its own name.
    by_group = {group(os.path.basename(args[0])): usage.ru_utime + usage.ru_stime}
    for pid, (name, cpu) in after.items():
        start = before.get(pid, (name, 0.0))[1]
        by_group[name] = by_group.get(name, 0.0) + cpu - start
    busy, idle, steal = busy1 - busy0, idle1 - idle0, steal1 - steal0
    named = sum(by_group.values())
    if per in ("wrk", "pgbench"):
        pattern = r"(\d+) requests in" if per == "wrk" else r"actually processed: (\d+)"
        found = re.search(pattern, output)
        per = float(found.group(1)) if found else None
    elif per is not None:
        per = float(per)
    rows = sorted(((v, k) for k, v in by_group.items() if v >= 0.005), reverse=True)
    rows.append((busy - named, "ended in the run, interrupts"))
    rows.append((idle, "idle"))
    rows.append((steal, "stolen by the hypervisor"))
    total = (busy + idle + steal) or 1 / TICK
    print(f"cpu over {total:.2f} core-seconds ({total / (os.cpu_count() or 1):.2f} s of wall time):",
          file=sys.stderr)
    for v, k in rows:
        line = f"  {k:<26} {v:8.2f} s {100 * v / total:5.1f}%"
        if per:
            line += f"  {1000 * v / per:8.3f} ms per unit"
        print(line, file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
