"""The status dashboard: one self-contained HTML page (inline CSS, and SVG charts drawn by pygal; no script, no
external asset), written atomically, so it can be opened from disk or served by any web server."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path

import pygal  # type: ignore[import-untyped]
from pygal.style import Style  # type: ignore[import-untyped]

from runner.monitoring.history import History, Run
from runner.monitoring.status import RepositoryStatus, overview
from runner.settings import Settings
from runner.units import UNITS, age_text, duration_text, rate_text, size_text
from runner.workspace import write_atomically

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
WIDTH, HEIGHT = 580, 250
DATE_LABELS = 5  # at most, on a chart's time axis
LOOK = dict(background="#fff", plot_background="#fff", foreground="#333", foreground_strong="#222",
            foreground_subtle="#777", font_family="system-ui, sans-serif", label_font_size=12, major_label_font_size=12,
            legend_font_size=13)
# What pygal puts in its SVG that this page must not have: scripts (for its tooltips), comments naming its web
# site, and XML namespaces (SVG inside HTML needs none).
UNWANTED = re.compile(r"<script\b.*?</script>|<!--.*?-->|\s+xmlns(?::\w+)?=\"[^\"]*\"", re.S)

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; background: #fafafa; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; } h3 { font-size: 15px; margin: 18px 0 6px; }
table { border-collapse: collapse; background: #fff; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; }
th { background: #f0f0f0; }
td.number { text-align: right; white-space: nowrap; }
.ok { color: #1a7f37; font-weight: 600; } .bad { color: #b42318; font-weight: 600; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; background: #fff; border: 1px solid #ddd; padding: 8px; }
figcaption { font-weight: 600; margin-bottom: 4px; }
.no-data { display: flex; align-items: center; justify-content: center; color: #777; }
"""

STATUS_HEAD = ("<thead><tr><th>source</th><th>destination</th><th>health</th><th>last success</th><th>RPO</th>"
               "<th>last outcome</th><th>last size</th><th>change</th><th>repository</th><th>snapshots</th>"
               "<th>backups ok, 30 days</th><th>backups ok, 90 days</th><th>last restore test</th></tr></thead>")


def size_unit(largest: float) -> tuple[float, str]:
    """The unit an axis of sizes up to `largest` bytes is labelled in: (bytes in one, its name)."""
    power = 0
    while power < len(UNITS) - 1 and largest >= 1024 ** (power + 1):
        power += 1
    return 1024 ** power, UNITS[power]


def duration_unit(largest: float) -> tuple[float, str]:
    return (3600, "h") if largest >= 7200 else (60, "min") if largest >= 120 else (1, "s")


def ratio_unit(largest: float) -> tuple[float, str]:
    return 1, "×"


@dataclass(frozen=True)
class Metric:
    """One kind of chart: a measure of the runs of one kind over time, on an axis in human units."""

    name: str
    title: str
    kind: str  # of run
    value: Callable[[Run], float | None]
    unit: Callable[[float], tuple[float, str]]  # for the largest value: the divisor and the unit's name

    @property
    def what(self) -> str:
        return self.kind.replace("-", " ")


METRICS = (
    Metric("size", "backup size (read)", "backup", lambda run: run.bytes_processed, size_unit),
    Metric("duration", "backup duration", "backup", lambda run: run.duration, duration_unit),
    Metric("deduplication", "deduplication ratio", "prune", lambda run: run.figures.get("deduplication_ratio"),
           ratio_unit),
    Metric("restore", "restore test duration", "restore-test", lambda run: run.duration, duration_unit),
)


def chart(metric: Metric, source: str, series: dict[str, list[tuple[datetime, float]]], destinations: list[str]) -> str:
    """A line chart of one measure of one source, one line per destination (in the order and colour of
    `destinations`), as inline SVG: every destination named in the legend below it, the value axis in the unit
    that suits the largest value."""
    caption = f"<figcaption>{escape(source)}: {metric.title}</figcaption>"
    if not series:
        empty = (f'<div class="no-data" style="width: {WIDTH}px; height: {HEIGHT}px">'
                 f"no successful {metric.what} yet</div>")
        return f'<figure data-chart="{metric.name}" data-source="{escape(source)}">{caption}{empty}</figure>'
    drawn_destinations = [name for name in destinations if name in series]
    colors = tuple(COLORS[destinations.index(name) % len(COLORS)] for name in drawn_destinations)
    divisor, unit = metric.unit(max((value for points in series.values() for _, value in points), default=1))
    label = f"{{:.4g}}{unit}" if unit == "×" else f"{{:.4g}} {unit}"
    drawn = pygal.DateTimeLine(
        width=WIDTH, height=HEIGHT, explicit_size=True, margin=8, style=Style(**LOOK, colors=colors),
        js=[], disable_xml_declaration=True, classes=["pygal-chart", "chart"],
        legend_at_bottom=True, legend_at_bottom_columns=min(len(series), 4), truncate_legend=-1, truncate_label=-1,
        value_formatter=label.format, max_scale=6, dots_size=2,
        x_labels=date_labels([when for points in series.values() for when, _ in points]),
        x_value_formatter=lambda when: f"{when:%b %d}")
    for destination in drawn_destinations:
        drawn.add(destination, [(when, value / divisor) for when, value in sorted(series[destination])])
    svg = UNWANTED.sub("", drawn.render(is_unicode=True))
    return f'<figure data-chart="{metric.name}" data-source="{escape(source)}">{caption}{svg}</figure>'


def date_labels(times: list[datetime]) -> list[datetime]:
    """A few midnights spread over the times, for the time axis (pygal's own would overlap)."""
    if not times:
        return []
    first = min(times).replace(hour=0, minute=0, second=0, microsecond=0)
    step = max(1, -(-(max(times) - first).days // (DATE_LABELS - 1)))
    return [first + timedelta(days=day) for day in range(0, (max(times) - first).days + 1, step)]


def _series(history: History, metric: Metric) -> dict[str, dict[str, list[tuple[datetime, float]]]]:
    """source -> destination -> (when, value) of the successful runs."""
    found: dict[str, dict[str, list[tuple[datetime, float]]]] = {}
    for run in history.runs(kind=metric.kind):
        measured = metric.value(run)
        if run.status == "ok" and measured is not None:
            # pygal's date axis reads naive times; these are UTC
            point = (run.ended_at.astimezone(UTC).replace(tzinfo=None), float(measured))
            found.setdefault(run.source, {}).setdefault(run.destination, []).append(point)
    return found


def charts(history: History, states: list[RepositoryStatus]) -> str:
    """Per source, one chart of each measure: the sources and destinations configured, in their order, then any
    other the history has."""
    measured = {metric.name: _series(history, metric) for metric in METRICS}
    found = [(source, destination) for by_source in measured.values() for source, by_destination in by_source.items()
             for destination in by_destination]
    sources = list(dict.fromkeys([*(state.source for state in states), *sorted(source for source, _ in found)]))
    destinations = list(dict.fromkeys([*(state.destination for state in states), *sorted(d for _, d in found)]))
    return "".join(
        f'<section class="source"><h3>{escape(source)}</h3><div class="charts">'
        + "".join(chart(metric, source, measured[metric.name].get(source, {}), destinations) for metric in METRICS)
        + "</div></section>"
        for source in sources)


def status_row(state: RepositoryStatus) -> str:
    def bad(text: str) -> str:
        return f'<span class="bad">{text}</span>'

    health = '<span class="ok">ok</span>' if state.healthy else bad("attention")
    change = f"{state.size_change:+.0%}" if state.size_change is not None else "-"
    age = age_text(state.age_hours * 3600 if state.age_hours is not None else None)
    rate_30d = rate_text(state.success_rate_30d)
    restore = escape(state.last_restore_test or "-")
    if state.last_restore_test_at:
        restore += f" ({state.last_restore_test_at:%Y-%m-%d}, {duration_text(state.last_restore_test_seconds)})"
    if state.restore_test_overdue:
        restore += " " + bad("overdue")
    cells = [escape(state.source), escape(state.destination), health, age if state.within_rpo else bad(age),
             "within" if state.within_rpo else bad("past"), escape(state.last_outcome or "-")]
    numbers = [size_text(state.last_size), change, size_text(state.repository_bytes),
               str(state.snapshots) if state.snapshots is not None else "-",
               bad(rate_30d) if state.below_success_floor else rate_30d, rate_text(state.success_rate_90d)]
    return ("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells)
            + "".join(f'<td class="number">{cell}</td>' for cell in numbers) + f"<td>{restore}</td></tr>")


def render(settings: Settings, history: History, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    states = overview(settings, history, now)
    rows = "".join(map(status_row, states))
    alerts = "".join(
        f"<tr><td>{escape(a['at'][:19])}</td><td>{escape(a['event'])}</td><td>{escape(a['kind'])}</td>"
        f"<td>{escape(a['source'])} / {escape(a['destination'])}</td><td>{escape(a['message'][:300])}</td></tr>"
        for a in history.alert_log(20)) or '<tr><td colspan="5">no alerts</td></tr>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Offsite backups: {escape(settings.restic.host)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>
<body>
<h1>Offsite backups of {escape(settings.restic.host)}</h1>
<p>Generated {now:%Y-%m-%d %H:%M} UTC. Recovery point objective: {duration_text(settings.monitoring.rpo)}.
Backups should succeed at least {rate_text(settings.monitoring.success_rate_floor)} of the time over 30 days; a
restore test is due every {duration_text(settings.monitoring.restore_test_every)}.</p>
<h2>Status</h2>
<table id="status">{STATUS_HEAD}
<tbody>{rows}</tbody></table>
<h2>History</h2>
{charts(history, states)}
<h2>Latest alerts</h2>
<table id="alerts"><thead><tr><th>time</th><th>event</th><th>kind</th><th>where</th><th>message</th></tr></thead>
<tbody>{alerts}</tbody></table>
</body></html>
"""


def write(settings: Settings, history: History, path: Path) -> Path:
    return write_atomically(path, render(settings, history), mode=0o644)
