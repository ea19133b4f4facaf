#!/usr/bin/env python3
"""The tables of scripts/compare-nginx.sh, from its CSV (stdlib only).

    scripts/compare_report.py RESULTS.csv [--json compare.json] [--meta key=value ...]

Prints, for the parts present in the CSV:
  percore  every run (req/s, p50/p99, CPU µs per request user + kernel, RES and system
           calls per request, cores used), then per concurrency the median over rounds
           of each proxy and the ratios ringgate/nginx (with the per-round range);
  both     req/s, p50/p99 and CPU per request of ringgate, nginx and direct, and the
           req/s ratio;
  c1       the p50 and p99 each proxy adds over calling the upstream directly;
  idle     RSS growth per idle keep-alive connection of each proxy, and the ratio.
The JSON holds the metadata, every row and these summaries.
"""

import argparse
import csv
import datetime
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chart import num  # noqa: E402  (the same number parsing as the chart)

FIELDS = ("concurrency", "requests", "errors", "rps", "p50_ms", "p95_ms", "p99_ms", "proxy_user_us",
          "proxy_sys_us", "proxy_cores", "upstream_us", "res_per_req", "syscalls_per_req",
          "rss_before_kb", "rss_after_kb", "kb_per_conn")
PROXIES = ("ringgate", "nginx")


def read(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in FIELDS:
            r[k] = num(r.get(k))
        r["round"] = int(r["round"])
        if r["proxy_user_us"] is not None and r["proxy_sys_us"] is not None:
            r["proxy_cpu_us"] = round(r["proxy_user_us"] + r["proxy_sys_us"], 1)
        else:
            r["proxy_cpu_us"] = None
    return rows


def f(v, d):
    return "n/a" if v is None else f"{v:.{d}f}"


def ratio(a, b):
    return None if a is None or not b else a / b


def table(header, lines):
    """Left-aligns the first two columns, right-aligns the rest."""
    cells = [header] + lines
    widths = [max(len(str(c[i])) for c in cells) for i in range(len(header))]
    for n, line in enumerate(cells):
        print("  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w) for i, (c, w) in enumerate(zip(line, widths))))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


PERCORE_METRICS = [("rps", "req/s", 0), ("p50_ms", "p50 ms", 3), ("p99_ms", "p99 ms", 3),
                   ("proxy_cpu_us", "CPU µs/req", 1), ("proxy_user_us", "user µs", 1),
                   ("proxy_sys_us", "kernel µs", 1), ("res_per_req", "RES/req", 3),
                   ("syscalls_per_req", "syscalls/req", 2), ("proxy_cores", "cores", 2)]


def percore(rows, meta):
    out = []
    print(f"per-core: each proxy alone on CPU {meta.get('proxy_cpu', '?')}, wrk -t1 and the upstream on CPU "
          f"{meta.get('load_cpu', '?')} ({meta.get('duration', '?')} per run)")
    table(["conc", "target", "round"] + [h for _, h, _ in PERCORE_METRICS] + ["errors"],
          [[f"{r['concurrency']:.0f}", r["target"], r["round"]] + [f(r[k], d) for k, _, d in PERCORE_METRICS]
           + [f(r["errors"], 0)] for r in rows])
    print()
    print("per-core, median over rounds, and ringgate/nginx (ratio of the medians; the per-round ratios' range)")
    lines = []
    for conc in sorted({r["concurrency"] for r in rows}):
        s = {"concurrency": conc}
        for metric, head, d in PERCORE_METRICS:
            med = {t: median(r[metric] for r in rows if r["concurrency"] == conc and r["target"] == t) for t in PROXIES}
            per_round = []
            for rnd in sorted({r["round"] for r in rows}):
                pair = {r["target"]: r[metric] for r in rows if r["concurrency"] == conc and r["round"] == rnd}
                q = ratio(pair.get("ringgate"), pair.get("nginx"))
                if q is not None:
                    per_round.append(q)
            q = ratio(med["ringgate"], med["nginx"])
            s[metric] = {"ringgate": med["ringgate"], "nginx": med["nginx"], "ratio": None if q is None else round(q, 3),
                         "ratio_min": round(min(per_round), 3) if per_round else None,
                         "ratio_max": round(max(per_round), 3) if per_round else None}
            rng = f"{min(per_round):.2f}-{max(per_round):.2f}" if len(per_round) > 1 else ""
            lines.append([f"{conc:.0f}", head, f(med["ringgate"], d), f(med["nginx"], d),
                          "n/a" if q is None else f"{q:.2f}x", rng])
        out.append(s)
    table(["conc", "metric", "ringgate", "nginx", "ratio", "per round"], lines)
    notes = [meta[k] for k in ("syscalls_note", "res_note") if meta.get(k)]
    print("(CPU from /proc/PID/stat over each wrk run, all threads; RES = reschedule interrupts on the proxy's CPU"
          + ("; " + "; ".join(notes) if notes else "") + ")")
    return out


def both(rows):
    out = []
    print("both cores: proxies on every CPU, load unpinned")
    lines = []
    for key in dict.fromkeys((r["tool"], r["concurrency"]) for r in rows):
        by = {r["target"]: r for r in rows if (r["tool"], r["concurrency"]) == key}
        for t in ("ringgate", "nginx", "direct"):
            r = by.get(t)
            if r:
                lines.append([f"{key[0]} -c{key[1]:.0f}", t, f(r["rps"], 0), f(r["p50_ms"], 3), f(r["p99_ms"], 3),
                              f(r["proxy_user_us"], 1), f(r["proxy_sys_us"], 1), f(r["upstream_us"], 1),
                              f(r["errors"], 0)])
        rg, ng = by.get("ringgate"), by.get("nginx")
        q = ratio(rg and rg["rps"], ng and ng["rps"])
        out.append({"tool": key[0], "concurrency": key[1], "ringgate_over_nginx_rps": None if q is None else round(q, 3),
                    "ringgate_p99_ms": rg and rg["p99_ms"], "nginx_p99_ms": ng and ng["p99_ms"]})
        lines.append(["", "ringgate/nginx", "n/a" if q is None else f"{q:.2f}x", "", "", "", "", "", ""])
    table(["load", "target", "req/s", "p50 ms", "p99 ms", "user µs/req", "kernel µs/req", "upstream µs/req", "errors"],
          lines)
    print("(hey reports latency in 0.1 ms steps; wrk to 1 µs)")
    return out


def c1(rows):
    by = {r["target"]: r for r in rows}
    d = by.get("direct")
    lines, out = [], {}
    for t in ("ringgate", "nginx", "direct"):
        r = by.get(t)
        if not r:
            continue
        a50 = a99 = None
        if t != "direct" and d and r["p50_ms"] is not None and d["p50_ms"] is not None:
            a50 = (r["p50_ms"] - d["p50_ms"]) * 1000
        if t != "direct" and d and r["p99_ms"] is not None and d["p99_ms"] is not None:
            a99 = (r["p99_ms"] - d["p99_ms"]) * 1000
        if t != "direct":
            out[t] = {"added_p50_us": None if a50 is None else round(a50, 1),
                      "added_p99_us": None if a99 is None else round(a99, 1)}
        lines.append(["wrk -c1", t, f(r["p50_ms"], 3), f(r["p99_ms"], 3),
                      "" if t == "direct" else ("n/a" if a50 is None else f"{a50:+.0f}"),
                      "" if t == "direct" else ("n/a" if a99 is None else f"{a99:+.0f}"), f(r["errors"], 0)])
    print("latency at concurrency 1: what each proxy adds over calling the upstream directly")
    table(["load", "target", "p50 ms", "p99 ms", "added p50 µs", "added p99 µs", "errors"], lines)
    return out


def idle(rows):
    by = {r["target"]: r for r in rows}
    out = {t: {"kb_per_conn": by[t]["kb_per_conn"], "connections": by[t]["concurrency"]} for t in by}
    rg, ng = by.get("ringgate"), by.get("nginx")
    q = ratio(rg and rg["kb_per_conn"], ng and ng["kb_per_conn"])
    out["ringgate_over_nginx"] = None if q is None else round(q, 3)
    print("idle keep-alive connections, each served one request: RSS growth")
    lines = [[f"{r['concurrency']:.0f}", t, f(r["rss_before_kb"], 0), f(r["rss_after_kb"], 0), f(r["kb_per_conn"], 1),
              f(r["errors"], 0)] for t, r in by.items()]
    lines.append(["", "ringgate/nginx", "", "", "n/a" if q is None else f"{q:.2f}x", ""])
    table(["conns", "target", "RSS before KiB", "RSS after KiB", "KB per conn", "errors"], lines)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv")
    ap.add_argument("--json")
    ap.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args()
    meta = {"generated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    for kv in a.meta:
        k, _, v = kv.partition("=")
        meta[k] = v
    rows = read(a.csv)
    if not rows:
        sys.exit(f"compare_report.py: {a.csv} has no rows")
    summary = {}
    for part, fn in (("percore", lambda rs: percore(rs, meta)), ("both", both), ("c1", c1), ("idle", idle)):
        rs = [r for r in rows if r["part"] == part]
        if rs:
            summary[part] = fn(rs)
            print()
    if a.json:
        with open(a.json, "w", encoding="utf-8") as fh:
            json.dump({"meta": meta, "results": rows, "summary": summary}, fh, indent=2)
            fh.write("\n")


if __name__ == "__main__":
    main()
