#!/usr/bin/env python3
"""Draws benches/compare.sh's results as a self-contained SVG (python3 standard library only).

Usage: benches/chart.py [--csv benches/results/latest.csv] [--out benches/results/latest.svg]
                        [--from-md benches/results/latest.md]

The CSV has a header and one line per workload and server: workload,server,rate,p99_ms,cpu_us
and, in newer runs, kernel_pct (not drawn); compare.sh writes it. With --from-md the CSV is
first regenerated from the tables of a compare.sh report, for results recorded before
compare.sh wrote CSV.

Two panels share one row per workload: throughput (requests/s or messages/s) and server CPU
time per request (or message). Rates span three orders of magnitude across workloads, so each
workload is normalised to percore = 100 % and every bar is labelled with its absolute value.
CPU bars longer than the axis are cut, marked with a break, and labelled with their ratio.
"""

import argparse
import csv
import os
import re
import sys
from html import escape

SERVERS = {
    "percore": ("percore", "#e8590c"),
    "nginx": ("nginx", "#2f9e44"),
    "tokio": ("tokio-tungstenite", "#1c7ed6"),
    # The peers of issue 15 (benches/peers), on the rows where compare.sh runs them.
    "lwan": ("lwan", "#7048e8"),
    "h2o": ("h2o", "#c2255c"),
    "may-minihttp": ("may-minihttp", "#f08c00"),
    "uws": ("uWebSockets", "#0c8599"),
    "fastwebsockets": ("fastwebsockets", "#66a80f"),
}

TITLES = {
    "small-ka": "150 B file, keep-alive, 50 conns",
    "small-c500": "150 B file, keep-alive, 500 conns",
    "4k": "4 KiB file, keep-alive, 50 conns",
    "1m": "1 MiB file, keep-alive, 50 conns",
    "close": "150 B, new connection per request",
    "pipeline16": "150 B, pipelined ×16, 50 conns",
    "ws64": "64 B messages, 50 conns",
    "ws16k": "16 KiB messages, 50 conns",
    "ws64-deep": "64 B messages, 64 in flight",
    "ws64-deflate": "64 B, deflate (percore only)",
    "ws16k-deflate": "16 KiB, deflate (percore only)",
}

# Geometry, in SVG pixels.
WIDTH = 1040
LABEL_W = 250  # workload labels on the left
PANEL_W = 375  # each of the two panels
PANEL_GAP = 40
BAR_AXIS_W = 255  # the part of a panel the axis spans; the rest is room for labels
BAR_H = 13
BAR_GAP = 3
GROUP_GAP = 14
SECTION_H = 26
TOP = 96
RATE_AXIS_MAX = 125  # percent
CPU_AXIS_MAX = 250  # percent


def read_rows(path):
    """Returns {workload: {server: (rate, cpu_us)}} in file order; skips rows without numbers."""
    rows = {}
    with open(path, newline="") as f:
        for rec in csv.DictReader(f):
            try:
                rate, cpu = float(rec["rate"]), float(rec["cpu_us"])
            except (KeyError, TypeError, ValueError):
                continue
            if rate != rate or cpu != cpu:  # nan
                continue
            rows.setdefault(rec["workload"], {})[rec["server"]] = (rate, cpu)
    return rows


def csv_from_md(md_path, csv_path):
    """Writes the CSV from the result tables of a compare.sh report."""
    out = []
    header = None
    with open(md_path) as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else None
            if cells is None:
                header = None
                continue
            if cells[0] == "workload":
                header = cells
                continue
            if header is None or set(line.strip()) <= set("|-: "):
                continue
            m = re.search(r"\(`([^`]+)`\)\s*$", cells[0])
            if not m:
                continue
            workload = m.group(1)
            for server in ("percore", "nginx", "tokio"):
                values = {}
                for col, name in zip(header, cells):
                    if not col.startswith(server + " "):
                        continue
                    kind = col.split(" ", 1)[1]
                    if kind in ("req/s", "msg/s"):
                        values["rate"] = name
                    elif kind == "p99 ms":
                        values["p99_ms"] = name
                    elif kind.startswith("CPU"):
                        values["cpu_us"] = name
                if values.get("rate", "n/a") == "n/a" or "cpu_us" not in values:
                    continue
                p99 = values.get("p99_ms", "")
                out.append([workload, server, values["rate"], "" if p99 == "n/a" else p99, values["cpu_us"]])
    if not out:
        sys.exit(f"chart.py: no result rows found in {md_path}")
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["workload", "server", "rate", "p99_ms", "cpu_us"])
        w.writerows(out)


def fmt_rate(v):
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e4:
        return f"{v / 1e3:.0f}k"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k"
    return f"{v:.0f}"


def fmt_us(v):
    if v >= 100:
        return f"{v:.0f} µs"
    if v >= 10:
        return f"{v:.1f} µs"
    return f"{v:.2f} µs"


def text(x, y, s, size=12, anchor="start", weight="normal", fill="#212529"):
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'font-weight="{weight}" fill="{fill}">{escape(s)}</text>')


def run_metadata(csv_path):
    """The date and machine lines of the report beside the CSV, if there is one."""
    md = os.path.splitext(csv_path)[0] + ".md"
    found = {}
    if os.path.exists(md):
        with open(md) as f:
            for line in f:
                m = re.match(r"- (date|machine|command): (.*)", line.strip())
                if m:
                    found[m.group(1)] = m.group(2)
    return found


def panel_bar(x0, y, pct, axis_max, color, label, broken):
    """One bar from x0, pct of percore, cut at the axis end when longer; returns SVG pieces."""
    scale = BAR_AXIS_W / axis_max
    w = min(pct, axis_max) * scale
    parts = [f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(w, 1.5):.1f}" height="{BAR_H}" fill="{color}"/>']
    if broken:
        # Two white slashes mark a bar cut short.
        for dx in (-14, -9):
            bx = x0 + w + dx
            parts.append(f'<path d="M{bx:.1f},{y + BAR_H + 1:.1f} L{bx + 5:.1f},{y - 1:.1f}" '
                         'stroke="#fff" stroke-width="2.5"/>')
    parts.append(text(x0 + max(w, 1.5) + 4, y + BAR_H - 2.5, label, size=11))
    return parts


def versus(servers):
    """'percore vs a, b and c' for the servers (keys of SERVERS or other names) besides percore."""
    names = [SERVERS.get(s, (s,))[0] for s in servers if s != "percore"]
    if not names:
        return "percore"
    return "percore vs " + (names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1])


def draw(rows, meta):
    groups = []
    for kind, ws in (("HTTP static files", [w for w in rows if not w.startswith("ws")]),
                     ("WebSocket echo", [w for w in rows if w.startswith("ws")])):
        present = {s for w in ws for s in rows[w]}
        servers = [s for s in SERVERS if s in present] + sorted(present - set(SERVERS))
        groups.append((f"{kind}: {versus(servers)}", ws))
    groups = [(title, ws) for title, ws in groups if ws]
    present = {s for r in rows.values() for s in r}
    peers = present - {"percore", "nginx", "tokio"}
    title = "percore vs nginx and tokio-tungstenite" + (" and the fastest peers" if peers else "") + ", one core each"
    # The legend sits right of the title when it fits, else on a row of its own below the
    # heading lines (estimated widths: 7 px per legend character, 10.5 per title character).
    legend = [k for k in SERVERS if k in present]
    legend_w = sum(7 * len(SERVERS[k][0]) + 30 for k in legend)
    legend_row = WIDTH - 16 - legend_w < 16 + 10.5 * len(title) + 20
    top = TOP + (22 if legend_row else 0)
    height = top
    for _, ws in groups:
        height += SECTION_H
        for w in ws:
            height += len(rows[w]) * (BAR_H + BAR_GAP) + GROUP_GAP
    height += 46
    # The command goes right of the footnote, or on a line of its own below it when the two
    # would overlap (about 6.2 px per character at 11 px).
    foot = "Ratios in brackets are relative to percore. Bars with a white break are cut at the axis end."
    command = meta.get("command", "").strip("`")
    command_row = command and 16 + 6.2 * (len(foot) + len(command)) + 24 > WIDTH - 16
    if command_row:
        height += 16
    rate_x = LABEL_W
    cpu_x = LABEL_W + PANEL_W + PANEL_GAP
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Verdana, Arial, sans-serif">',
           f'<rect width="{WIDTH}" height="{height}" fill="#fff"/>',
           text(16, 26, title, size=17, weight="bold")]
    sub = "Each workload normalised to percore = 100 %; labels are absolute values (medians)."
    if meta.get("date"):
        sub += f"  Run {meta['date']}"
    svg.append(text(16, 46, sub, size=12, fill="#495057"))
    if meta.get("machine"):
        svg.append(text(16, 62, meta["machine"], size=11, fill="#868e96"))

    # Legend.
    lx, ly = WIDTH - 16, (72 if legend_row else 16)
    for key in reversed(legend):
        name, color = SERVERS[key]
        lx -= 7 * len(name) + 30
        svg.append(f'<rect x="{lx:.1f}" y="{ly}" width="12" height="12" fill="{color}"/>')
        svg.append(text(lx + 17, ly + 10.5, name, size=12))

    # Panel headings and axes.
    axis_top, axis_bottom = top - 4, height - 40 - (16 if command_row else 0)
    for x0, heading, axis_max, ticks in (
            (rate_x, "Throughput (req/s or msg/s), higher is better", RATE_AXIS_MAX, (0, 50, 100)),
            (cpu_x, "Server CPU per request or message, lower is better", CPU_AXIS_MAX, (0, 100, 200))):
        svg.append(text(x0, top - 14, heading, size=12.5, weight="bold"))
        scale = BAR_AXIS_W / axis_max
        for t in ticks:
            tx = x0 + t * scale
            dash = "" if t == 100 else ' stroke-dasharray="3,3"'
            color = "#495057" if t == 100 else "#ced4da"
            svg.append(f'<line x1="{tx:.1f}" y1="{axis_top}" x2="{tx:.1f}" y2="{axis_bottom}" '
                       f'stroke="{color}" stroke-width="1"{dash}/>')
            svg.append(text(tx, axis_bottom + 15, f"{t} %", size=10.5, anchor="middle", fill="#495057"))

    y = top
    for group_title, workloads in groups:
        svg.append(text(16, y + 17, group_title, size=13, weight="bold", fill="#343a40"))
        y += SECTION_H
        for w in workloads:
            servers = [s for s in SERVERS if s in rows[w]] + [s for s in rows[w] if s not in SERVERS]
            group_h = len(servers) * (BAR_H + BAR_GAP) - BAR_GAP
            svg.append(text(LABEL_W - 12, y + group_h / 2 + 4, TITLES.get(w, w), size=12, anchor="end"))
            base = rows[w].get("percore")
            for s in servers:
                rate, cpu = rows[w][s]
                color = SERVERS.get(s, (s, "#868e96"))[1]
                rate_pct = rate / base[0] * 100 if base else 100
                cpu_pct = cpu / base[1] * 100 if base else 100
                rate_label = fmt_rate(rate)
                if s != "percore" and base:
                    rate_label += f"  ({rate / base[0]:.2f}×)"
                cpu_label = fmt_us(cpu)
                if s != "percore" and base:
                    cpu_label += f"  ({cpu / base[1]:.2f}×)"
                svg += panel_bar(rate_x, y, rate_pct, RATE_AXIS_MAX, color, rate_label, rate_pct > RATE_AXIS_MAX)
                svg += panel_bar(cpu_x, y, cpu_pct, CPU_AXIS_MAX, color, cpu_label, cpu_pct > CPU_AXIS_MAX)
                y += BAR_H + BAR_GAP
            y += GROUP_GAP - BAR_GAP
    if command_row:
        svg.append(text(16, height - 24, foot, size=11, fill="#868e96"))
        svg.append(text(16, height - 8, command, size=11, fill="#868e96"))
    else:
        svg.append(text(16, height - 8, foot, size=11, fill="#868e96"))
        if command:
            svg.append(text(WIDTH - 16, height - 8, command, size=11, anchor="end", fill="#868e96"))
    svg.append("</svg>")
    return "\n".join(svg) + "\n"


def main():
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", default=os.path.join(here, "latest.csv"))
    ap.add_argument("--out", default=None, help="default: the CSV's name with .svg")
    ap.add_argument("--from-md", default=None, help="first write the CSV from this compare.sh report")
    args = ap.parse_args()
    if args.from_md:
        csv_from_md(args.from_md, args.csv)
    rows = read_rows(args.csv)
    if not rows:
        sys.exit(f"chart.py: no rows with numbers in {args.csv}")
    out = args.out or os.path.splitext(args.csv)[0] + ".svg"
    with open(out, "w") as f:
        f.write(draw(rows, run_metadata(args.csv)))
    print(f"chart.py: wrote {out}")


if __name__ == "__main__":
    main()
