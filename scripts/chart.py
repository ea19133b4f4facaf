#!/usr/bin/env python3
"""Benchmark results: CSV -> table, JSON and a self-contained SVG chart (stdlib only).

    scripts/chart.py RESULTS.csv [--svg chart.svg] [--json results.json] [--table]
                     [--title TEXT] [--meta key=value ...]

The CSV needs the columns scenario, concurrency, rps and p99_ms; requests, errors,
p50_ms, p95_ms, cores (CPU the proxy used: CPU seconds / wall seconds) and
peak_rss_mb (its peak RSS) are used when present. Empty / "nan" values are skipped.

The SVG has two panels, req/s against concurrency and p99 latency (ms) against
concurrency, and, when the CSV has them, two more below: cores used and peak RSS
(MB). One line per scenario, log-scale x; points where a run saw errors get a
red ring. Its title carries the machine (CPU model, cores, kernel) so a
chart pasted into an issue says where it was measured.
"""

import argparse
import csv
import datetime
import json
import math
import os
import platform
import sys
from html import escape

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
NUMERIC = ("concurrency", "requests", "errors", "rps", "p50_ms", "p95_ms", "p99_ms", "cores", "peak_rss_mb")


def num(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) or math.isinf(f) else f


def machine_info():
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": f"{platform.system()} {platform.release()}",
        "hostname": platform.node(),
    }


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in NUMERIC:
            if k in r:
                v = num(r[k])
                if v is not None and k in ("concurrency", "requests", "errors") and v.is_integer():
                    v = int(v)
                r[k] = v
    return rows


def fmt(v, digits=2):
    if v is None:
        return "-"
    return f"{v:.{digits}f}"


def print_table(rows):
    cols = [("scenario", "scenario", None), ("concurrency", "conc", 0), ("rps", "req/s", 0),
            ("p50_ms", "p50 ms", 3), ("p95_ms", "p95 ms", 3), ("p99_ms", "p99 ms", 3),
            ("errors", "errors", 0), ("requests", "requests", 0), ("cores", "cores", 2),
            ("peak_rss_mb", "peak RSS MB", 1)]
    cols = [c for c in cols if any(c[0] in r for r in rows)]
    cells = [[h for _, h, _ in cols]]
    for r in rows:
        line = []
        for key, _, d in cols:
            v = r.get(key)
            line.append(str(v) if d is None else fmt(v, d))
        cells.append(line)
    widths = [max(len(c[i]) for c in cells) for i in range(len(cols))]
    for n, line in enumerate(cells):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def nice_max(v):
    if v <= 0:
        return 1.0
    exp = math.floor(math.log10(v))
    for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        cand = m * 10 ** exp
        if cand >= v * 1.05:
            return cand
    return 10 ** (exp + 1)


def tick_label(v):
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    if v >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def panel(out, x0, y0, w, h, series, field, ylabel, xs_all):
    """Draws one panel at (x0, y0) of size w*h (the plot area, axes outside it)."""
    xs = sorted(set(xs_all))
    lo, hi = math.log10(min(xs)), math.log10(max(xs))
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    pad = (hi - lo) * 0.05
    lo, hi = lo - pad, hi + pad
    ys = [r[field] for s in series.values() for r in s if r.get(field) is not None]
    ymax = nice_max(max(ys) if ys else 1.0)

    def px(x):
        return x0 + (math.log10(x) - lo) / (hi - lo) * w

    def py(y):
        return y0 + h - y / ymax * h

    out.append(f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="#fff" stroke="#999"/>')
    for i in range(6):
        yv = ymax * i / 5
        yy = py(yv)
        out.append(f'<line x1="{x0}" y1="{yy:.1f}" x2="{x0 + w}" y2="{yy:.1f}" stroke="#e5e5e5"/>')
        label = tick_label(yv) if field == "rps" else f"{yv:g}"
        out.append(f'<text x="{x0 - 6}" y="{yy + 4:.1f}" text-anchor="end" class="tick">{escape(label)}</text>')
    for xv in xs:
        xx = px(xv)
        out.append(f'<line x1="{xx:.1f}" y1="{y0}" x2="{xx:.1f}" y2="{y0 + h}" stroke="#eee"/>')
        out.append(f'<text x="{xx:.1f}" y="{y0 + h + 16}" text-anchor="middle" class="tick">{xv:g}</text>')
    out.append(f'<text x="{x0 + w / 2}" y="{y0 + h + 36}" text-anchor="middle" class="axis">'
               'concurrency (connections, log scale)</text>')
    out.append(f'<text transform="translate({x0 - 52},{y0 + h / 2}) rotate(-90)" text-anchor="middle" '
               f'class="axis">{escape(ylabel)}</text>')
    for i, (name, pts) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        segs, cur = [], []
        for r in pts:
            if r.get(field) is None or r.get("concurrency") is None:
                if cur:
                    segs.append(cur)
                cur = []
                continue
            cur.append((px(r["concurrency"]), py(r[field]), r))
        if cur:
            segs.append(cur)
        for seg in segs:
            if len(seg) > 1:
                d = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in seg)
                out.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="2"/>')
            for x, y, r in seg:
                tip = f"{name} c={r['concurrency']:g}: {fmt(r[field], 3)} {ylabel}"
                if r.get("errors"):
                    tip += f", {int(r['errors'])} errors"
                    out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="7" fill="none" stroke="#d00" stroke-width="2"/>')
                out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}"><title>{escape(tip)}</title></circle>')


def write_svg(path, rows, title, subtitle):
    series = {}
    for r in rows:
        if r.get("concurrency") is None or r["concurrency"] <= 0:
            continue
        series.setdefault(r.get("scenario") or "?", []).append(r)
    # A scenario that produced no numbers at all (skipped, or every request failed) gets no line.
    series = {k: v for k, v in series.items() if any(r.get("rps") is not None or r.get("p99_ms") is not None for r in v)}
    for pts in series.values():
        pts.sort(key=lambda r: r["concurrency"])
    xs_all = [r["concurrency"] for pts in series.values() for r in pts] or [1]
    panels = [("rps", "requests per second", "Throughput (req/s, higher is better)"),
              ("p99_ms", "p99 latency (ms)", "Tail latency (p99 ms, lower is better)")]
    # The proxy's resources, when measured: a second row of panels.
    if any(r.get("cores") is not None or r.get("peak_rss_mb") is not None for pts in series.values() for r in pts):
        panels += [("cores", "cores used", "Proxy CPU (cores = CPU s / wall s)"),
                   ("peak_rss_mb", "peak RSS (MB)", "Proxy peak RSS (MB)")]
    pw, ph, top, row_h = 460, 330, 90, 430
    rows_n = (len(panels) + 1) // 2
    W, H = 1200, 530 + row_h * (rows_n - 1)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
           'font-family="Helvetica, Arial, sans-serif">',
           '<style>.tick{font-size:11px;fill:#444}.axis{font-size:12px;fill:#222}'
           '.ptitle{font-size:14px;font-weight:bold;fill:#222}.legend{font-size:12px;fill:#222}</style>',
           f'<rect width="{W}" height="{H}" fill="#fafafa"/>',
           f'<text x="{W / 2}" y="30" text-anchor="middle" font-size="18" font-weight="bold">{escape(title)}</text>',
           f'<text x="{W / 2}" y="52" text-anchor="middle" font-size="12" fill="#555">{escape(subtitle)}</text>']
    for i, (field, ylabel, ptitle) in enumerate(panels):
        x0, y0 = 90 + (i % 2) * (pw + 130), top + (i // 2) * row_h
        out.append(f'<text x="{x0 + pw / 2}" y="{y0 - 10}" text-anchor="middle" class="ptitle">{escape(ptitle)}</text>')
        panel(out, x0, y0, pw, ph, series, field, ylabel, xs_all)
    ly = top + (rows_n - 1) * row_h + ph + 70
    lx = 90
    for i, name in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        out.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 24}" y2="{ly}" stroke="{color}" stroke-width="3"/>')
        out.append(f'<circle cx="{lx + 12}" cy="{ly}" r="3.5" fill="{color}"/>')
        out.append(f'<text x="{lx + 30}" y="{ly + 4}" class="legend">{escape(name)}</text>')
        lx += 40 + 7.5 * len(name)
        if lx > W - 150:
            lx, ly = 90, ly + 22
    if any(r.get("errors") for pts in series.values() for r in pts):
        out.append(f'<circle cx="{lx + 12}" cy="{ly}" r="7" fill="none" stroke="#d00" stroke-width="2"/>')
        out.append(f'<text x="{lx + 26}" y="{ly + 4}" class="legend">run saw errors</text>')
    out.append("</svg>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv")
    ap.add_argument("--svg")
    ap.add_argument("--json")
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--title", default="ringgate benchmark")
    ap.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args()

    rows = read_rows(a.csv)
    if not rows:
        sys.exit(f"chart.py: {a.csv} has no rows")
    m = machine_info()
    meta = {"generated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), **m}
    for kv in a.meta:
        k, _, v = kv.partition("=")
        meta[k] = v
    if a.table:
        print_table(rows)
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump({"meta": meta, "results": rows}, f, indent=2)
            f.write("\n")
    if a.svg:
        sub = f"{m['cpu']} · {m['cores']} cores · {m['kernel']} · {meta['generated_at']}"
        extra = [f"{k}: {meta[k]}" for k in ("duration", "requests", "tool") if meta.get(k)]
        if extra:
            sub += " · " + " · ".join(extra)
        write_svg(a.svg, rows, a.title, sub)


if __name__ == "__main__":
    main()
