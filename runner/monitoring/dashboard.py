"""The status dashboard: one self-contained HTML page (inline CSS and SVG, no script, no external
asset), written atomically, so it can be opened from disk or served by any web server."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from pathlib import Path

from runner.monitoring.history import History
from runner.monitoring.status import overview
from runner.settings import Settings
from runner.units import size_text
from runner.workspace import write_atomically

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
WIDTH, HEIGHT, PAD = 560, 220, 44

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; background: #fafafa; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
table { border-collapse: collapse; background: #fff; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; }
th { background: #f0f0f0; }
.ok { color: #1a7f37; font-weight: 600; } .bad { color: #b42318; font-weight: 600; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
figure { margin: 0; background: #fff; border: 1px solid #ddd; padding: 8px; }
figcaption { font-weight: 600; margin-bottom: 4px; }
svg text { font-size: 11px; fill: #555; }
"""

STATUS_HEAD = ("<thead><tr><th>source</th><th>destination</th><th>health</th><th>last success</th><th>RPO</th>\n"
               "<th>last outcome</th><th>last size</th><th>change</th><th>repository</th><th>snapshots</th>"
               "<th>last restore test</th></tr></thead>")



def chart(name: str, title: str, series: dict[str, list[tuple[datetime, float]]], unit: str = "") -> str:
    """A line chart of several series sharing a time axis, as inline SVG."""
    points = [(t, v) for values in series.values() for t, v in values]
    body = [f'<figure><figcaption>{escape(title)}</figcaption>'
            f'<svg class="chart" data-chart="{name}" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
            f'role="img" aria-label="{escape(title)}">',
            f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - 8}" y2="{HEIGHT - PAD}" stroke="#999"/>',
            f'<line x1="{PAD}" y1="8" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#999"/>']
    if not points:
        body.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">no data yet</text></svg></figure>')
        return "".join(body)
    start, end = min(t for t, _ in points).timestamp(), max(t for t, _ in points).timestamp()
    top = max(v for _, v in points) or 1
    span = (end - start) or 1

    def x(t):
        return PAD + (t.timestamp() - start) / span * (WIDTH - PAD - 16)

    def y(v):
        return HEIGHT - PAD - v / top * (HEIGHT - PAD - 16)

    label = (lambda v: size_text(v)) if unit == "bytes" else (lambda v: f"{v:.3g}{unit}")
    body += [f'<text x="{PAD - 4}" y="16" text-anchor="end">{escape(label(top))}</text>',
             f'<text x="{PAD - 4}" y="{HEIGHT - PAD}" text-anchor="end">0</text>',
             f'<text x="{PAD}" y="{HEIGHT - PAD + 16}">{datetime.fromtimestamp(start, UTC):%Y-%m-%d}</text>',
             f'<text x="{WIDTH - 8}" y="{HEIGHT - PAD + 16}" text-anchor="end">'
             f'{datetime.fromtimestamp(end, UTC):%Y-%m-%d}</text>']
    for index, (name_, values) in enumerate(sorted(series.items())):
        color = COLORS[index % len(COLORS)]
        coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in sorted(values))
        body.append(f'<polyline class="series" fill="none" stroke="{color}" stroke-width="2" points="{coords}"/>')
        body += [f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="2" fill="{color}"/>' for t, v in values[-60:]]
        body.append(f'<text x="{PAD + 8 + index * 130}" y="{HEIGHT - 8}" fill="{color}" style="fill:{color}">'
                    f'&#9632; {escape(name_)}</text>')
    body.append("</svg></figure>")
    return "".join(body)


def _series(history: History, kind: str, value) -> dict[str, list[tuple[datetime, float]]]:
    series: dict[str, list[tuple[datetime, float]]] = {}
    for run in history.runs(kind=kind):
        measured = value(run)
        if run.status == "ok" and measured is not None:
            series.setdefault(f"{run.source} / {run.destination}", []).append((run.ended_at, float(measured)))
    return series


def render(settings: Settings, history: History, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    rows = []
    for state in overview(settings, history, now):
        health = '<span class="ok">ok</span>' if state.healthy else '<span class="bad">attention</span>'
        change = f"{state.size_change:+.0%}" if state.size_change is not None else "-"
        age = f"{state.age_hours} h" if state.age_hours is not None else "never"
        rpo = "within" if state.within_rpo else '<span class="bad">past</span>'
        restore = escape(state.last_restore_test or "-")
        if state.last_restore_test_at:
            restore += f" ({state.last_restore_test_at:%Y-%m-%d}, {state.last_restore_test_seconds:.0f} s)"
        if state.restore_test_overdue:
            restore += ' <span class="bad">overdue</span>'
        rows.append(f"<tr><td>{escape(state.source)}</td><td>{escape(state.destination)}</td><td>{health}</td>"
                    f"<td>{age}</td><td>{rpo}</td><td>{escape(state.last_outcome or '-')}</td>"
                    f"<td>{size_text(state.last_size)}</td><td>{change}</td><td>{size_text(state.repository_bytes)}</td>"
                    f"<td>{state.snapshots if state.snapshots is not None else '-'}</td><td>{restore}</td></tr>")
    alerts = "".join(
        f"<tr><td>{escape(a['at'][:19])}</td><td>{escape(a['event'])}</td><td>{escape(a['kind'])}</td>"
        f"<td>{escape(a['source'])} / {escape(a['destination'])}</td><td>{escape(a['message'][:300])}</td></tr>"
        for a in history.alert_log(20)) or '<tr><td colspan="5">no alerts</td></tr>'
    charts = "".join([
        chart("size", "Backup size (bytes read)", _series(history, "backup", lambda r: r.bytes_processed), "bytes"),
        chart("duration", "Backup duration", _series(history, "backup", lambda r: r.duration), " s"),
        chart("deduplication", "Deduplication ratio",
              _series(history, "prune", lambda r: r.figures.get("deduplication_ratio")), ":1"),
        chart("restore", "Restore test duration", _series(history, "restore-test", lambda r: r.duration), " s"),
    ])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Offsite backups: {escape(settings.restic.host)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>
<body>
<h1>Offsite backups of {escape(settings.restic.host)}</h1>
<p>Generated {now:%Y-%m-%d %H:%M} UTC. Recovery point objective: {settings.monitoring.rpo / 3600:g} h.</p>
<h2>Status</h2>
<table id="status">{STATUS_HEAD}
<tbody>{''.join(rows)}</tbody></table>
<h2>History</h2>
<div class="charts">{charts}</div>
<h2>Latest alerts</h2>
<table id="alerts"><thead><tr><th>time</th><th>event</th><th>kind</th><th>where</th><th>message</th></tr></thead>
<tbody>{alerts}</tbody></table>
</body></html>
"""


def write(settings: Settings, history: History, path: Path) -> Path:
    return write_atomically(path, render(settings, history), mode=0o644)
