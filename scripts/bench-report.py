#!/usr/bin/env python3
"""Turns scripts/bench.sh's raw results (one JSON line per workload run, per runtime) into the
side-by-side table, with the ratio crust/containerd and the targets of the performance issue,
and writes the same as JSON."""
import argparse
import datetime
import json
import os
import platform
import statistics


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def quantile(v, q):
    v = sorted(v)
    return v[round((len(v) - 1) * q)]


def lifecycle_steps(runs):
    steps = {}
    for r in runs:
        if r.get("workload") == "lifecycle":
            for s in r["results"]:
                steps.setdefault(s["step"], []).extend(s["samples_ms"])
    return steps


def rows(crust, ctrd):
    """(name, crust value, containerd value, unit, target ratio or None, absolute limit)"""
    out = []
    a, b = lifecycle_steps(crust), lifecycle_steps(ctrd)
    targets = {"pod start (runp+create+start)": 0.25, "ExecSync echo": 0.3}
    for step, samples in a.items():
        if step in b:
            out.append((f"{step}, median", statistics.median(samples),
                        statistics.median(b[step]), "ms", targets.get(step), None))
            out.append((f"{step}, p99", quantile(samples, 0.99), quantile(b[step], 0.99),
                        "ms", None, None))
    idle = lambda runs: next(r["daemon_rss_kib"] for r in runs if r.get("workload") == "idle")
    out.append(("daemon RSS, idle", idle(crust) / 1024, idle(ctrd) / 1024, "MiB", 0.3, 15))
    dens = lambda runs: {r["pods"]: r for r in runs if r.get("workload") == "density"}
    da, db = dens(crust), dens(ctrd)
    for pods in sorted(da):
        if pods not in db:
            continue
        x, y = da[pods], db[pods]
        out.append((f"{pods} pods at once, wall", x["start_wall_ms"], y["start_wall_ms"], "ms",
                    None, None))
        out.append((f"{pods} pods at once, failures", x["failures"], y["failures"], "",
                    None, 0 if pods >= 100 else None))
        if x.get("daemon_rss_kib") and y.get("daemon_rss_kib"):
            out.append((f"daemon RSS with {pods} pods", x["daemon_rss_kib"] / 1024,
                        y["daemon_rss_kib"] / 1024, "MiB", None, None))
        if x.get("helper_pss_kib") is not None and y.get("helper_pss_kib"):
            out.append((f"per-pod helper PSS ({pods} pods)", x["helper_pss_kib"] / 1024 / pods,
                        y["helper_pss_kib"] / 1024 / pods, "MiB", 0.3 if pods == 20 else None,
                        1 if pods == 20 else None))
        out.append((f"{pods} pods removed at once, wall", x["remove_wall_ms"], y["remove_wall_ms"],
                    "ms", None, None))
    lists = lambda runs: {s["step"]: s for r in runs if r.get("workload") == "list"
                          for s in r["results"]}
    la, lb = lists(crust), lists(ctrd)
    for step in la:
        if step in lb:
            out.append((f"{step}, median", la[step]["median_ms"], lb[step]["median_ms"], "ms",
                        None, None))
    pulls = lambda runs, img: [r["ms"] for r in runs
                               if r.get("workload") == "pull" and r["image"] == img]
    for img, label in (("busybox", "cold pull busybox"), ("big", "cold pull 5 layers ~55 MB")):
        pa, pb = pulls(crust, img), pulls(ctrd, img)
        if pa and pb:
            out.append((f"{label}, median", statistics.median(pa), statistics.median(pb), "ms",
                        0.5, None))
    return out


def verdict(value, other, target, limit):
    ok = True
    if target is not None and other:
        ok &= value / other <= target
    if limit is not None:
        ok &= value <= limit
    return ok


def main():
    p = argparse.ArgumentParser()
    p.add_argument("crust")
    p.add_argument("containerd")
    p.add_argument("--crustd")
    p.add_argument("--crustctl")
    p.add_argument("--containerd-version", default="")
    p.add_argument("--runc-version", default="")
    p.add_argument("--json")
    a = p.parse_args()
    crust, ctrd = load(a.crust), load(a.containerd)
    version = next((r["version"] for r in crust if "version" in r), "")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), platform.processor())
    machine = f"{os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}"
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print()
    print(f"crust {version} vs containerd {a.containerd_version} (runc {a.runc_version}); "
          f"{machine}; {date}")
    print(f'{"measure":<44} {"crust":>10} {"containerd":>11} {"unit":<4} {"ratio":>6}  target')
    table = []
    for name, x, y, unit, target, limit in rows(crust, ctrd):
        ratio = x / y if y else None
        goal = " ".join(filter(None, [f"≤{target}×" if target is not None else "",
                                      f"≤{limit} {unit}".strip() if limit is not None else ""]))
        mark = ("met" if verdict(x, y, target, limit) else "NOT met") if goal else ""
        r = f"{ratio:6.2f}" if ratio is not None else "     -"
        print(f"{name:<44} {x:>10.2f} {y:>11.2f} {unit:<4} {r}  {goal} {mark}")
        table.append({"measure": name, "crust": x, "containerd": y, "unit": unit,
                      "ratio": ratio, "target_ratio": target, "limit": limit,
                      "met": verdict(x, y, target, limit) if goal else None})
    sizes = {}
    for name in ("crustd", "crustctl"):
        path = getattr(a, name)
        if path:
            sizes[name] = os.path.getsize(path)
    if sizes:
        print("release binaries: " + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sizes.items()))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"date": date, "machine": machine, "crust_version": version,
                       "containerd_version": a.containerd_version,
                       "runc_version": a.runc_version, "binary_bytes": sizes,
                       "table": table}, f, indent=1)
        print(f"written to {a.json}")


if __name__ == "__main__":
    main()
