"""A self-contained HTML report: the figures, the workload per rep per day as an inline SVG
heat map, and the sequences' figures (per split variant; before and after in a comparison).
No scripts, no external assets: it opens from a file or an e-mail."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, timedelta
from html import escape

from .compare import Comparison
from .report import SequenceFigures, SimulationReport, StepFigures, hours

__all__ = ["render_html", "sequences_html"]

MAX_REPS = 40
MAX_DAYS = 366
_CELL = 14
_LEFT = 140
_TOP = 40


def _days(report: SimulationReport) -> list[str]:
    seen = sorted(report.activities_per_day)
    if not seen:
        return []
    first, last = date.fromisoformat(seen[0]), date.fromisoformat(seen[-1])
    span = min((last - first).days + 1, MAX_DAYS)
    start = last - timedelta(days=span - 1)
    return [(start + timedelta(days=i)).isoformat() for i in range(span)]


def workload_svg(report: SimulationReport) -> str:
    """The heat map: one row per rep (the :data:`MAX_REPS` busiest), one column per day (the
    last :data:`MAX_DAYS`), darker for more activities due; each cell has a tooltip."""
    reps = sorted(report.activities_per_rep, key=lambda r: (-report.activities_per_rep[r], r))
    reps = reps[:MAX_REPS]
    days = _days(report)
    if not reps or not days:
        return '<svg xmlns="http://www.w3.org/2000/svg" width="300" height="40" role="img">' \
            '<text x="10" y="25">no activities</text></svg>'  # fmt: skip
    peak = max((report.workload.get(r, {}).get(d, 0) for r in reps for d in days), default=1) or 1
    width = _LEFT + _CELL * len(days) + 20
    height = _TOP + _CELL * len(reps) + 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="activities per rep per day">',
        f'<text x="{_LEFT}" y="20" font-size="13">activities due per rep per day '
        f"(darkest: {peak})</text>",
    ]
    for col, day in enumerate(days):
        if col % 7 == 0:
            x = _LEFT + col * _CELL
            parts.append(
                f'<text x="{x}" y="{_TOP + _CELL * len(reps) + 16}" font-size="10">{day[5:]}</text>'
            )
    for row, rep in enumerate(reps):
        y = _TOP + row * _CELL
        parts.append(
            f'<text x="{_LEFT - 6}" y="{y + _CELL - 3}" font-size="11" text-anchor="end">'
            f"{escape(rep[:20])}</text>"
        )
        counts = report.workload.get(rep, {})
        for col, day in enumerate(days):
            count = counts.get(day, 0)
            if not count:
                fill = "#f1f3f5"
            else:
                level = count / peak
                red, green, blue = (int(230 - 200 * level), int(236 - 150 * level),
                                    int(250 - 90 * level))  # fmt: skip
                fill = f"rgb({red},{green},{blue})"
            parts.append(
                f'<rect x="{_LEFT + col * _CELL}" y="{y}" width="{_CELL - 1}" '
                f'height="{_CELL - 1}" fill="{fill}"><title>{escape(rep)} {day}: {count}'
                f"</title></rect>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _table(title: str, counts: dict[str, int], limit: int = 25) -> str:
    if not counts:
        return ""
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    body = "".join(f"<tr><td>{escape(k)}</td><td>{v}</td></tr>" for k, v in rows)
    return f"<h2>{escape(title)}</h2><table>{body}</table>"


_ROWS: tuple[tuple[str, Callable[[StepFigures], str]], ...] = (
    ("entries", lambda f: str(f.entries)),
    ("sends", lambda f: str(f.sent)),
    ("goals reached", lambda f: str(f.goals_reached)),
    ("completed", lambda f: str(f.completed)),
    ("active at the end", lambda f: str(f.active)),
    ("ended (unenrolled, re-entered)", lambda f: str(f.ended)),
    ("median time to goal", lambda f: hours(f.median_seconds_to_goal)),
)


def _grid(caption: str, columns: Sequence[tuple[str, StepFigures | None]]) -> str:
    """One table: a row per figure (and per action type and step run), a column each."""
    head = "".join(f"<th>{escape(name)}</th>" for name, _ in columns)
    rows = [f"<tr><th>{escape(caption)}</th>{head}</tr>"]
    empty = StepFigures()

    def row(label: str, values: list[str]) -> None:
        cells = "".join(f"<td>{escape(v)}</td>" for v in values)
        rows.append(f"<tr><td>{escape(label)}</td>{cells}</tr>")

    figures = [f if f is not None else empty for _, f in columns]
    for label, read in _ROWS:
        row(label, [read(f) for f in figures])
    for action_type in sorted({k for f in figures for k in f.sends}):
        row(f"sends: {action_type}", [str(f.sends.get(action_type, 0)) for f in figures])
    for step in dict.fromkeys(k for f in figures for k in f.steps):
        row(f"step {step} ran", [str(f.steps.get(step, 0)) for f in figures])
    return f"<table class='sequence'>{''.join(rows)}</table>"


def sequences_html(report: SimulationReport, comparison: Comparison | None = None) -> str:
    """The sequences section: per sequence, its figures and each split variant's in columns
    (with the A/B verdict); in a comparison, the two versions side by side."""
    if comparison is not None:
        differences = comparison.sequences
        if not differences:
            return ""
        parts = ["<h2>sequences, before and after</h2>"]
        for diff in differences:
            columns = [
                (f"before (v{diff.before.version})" if diff.before else "before (absent)",
                 diff.before),
                (f"after (v{diff.after.version})" if diff.after else "after (absent)",
                 diff.after),
            ]  # fmt: skip
            parts.append(_grid(f"sequence {diff.sequence_id}", columns))
        return "".join(parts)
    if not report.sequences:
        return ""
    parts = ["<h2>sequences</h2>"]
    for figures in report.sequences.values():
        parts.append(_one(figures))
    return "".join(parts)


def _one(figures: SequenceFigures) -> str:
    title = f"{figures.sequence_id} ({figures.name}, v{figures.version})"
    columns: list[tuple[str, StepFigures | None]] = [("all", figures)]
    for step, arms in figures.splits.items():
        columns.extend((f"{step}: {name}", arm) for name, arm in arms.items())
    verdicts = "".join(
        f"<p>split {escape(step)}: {escape(verdict)}</p>"
        for step, verdict in figures.verdicts.items()
    )
    return _grid(title, columns) + verdicts


_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#212529}"
    "table{border-collapse:collapse;margin-bottom:1em}"
    "td,th{border:1px solid #dee2e6;padding:2px 8px}td:last-child{text-align:right}"
    "table.sequence td+td{text-align:right}th{background:#f1f3f5;text-align:left}"
    ".chart{overflow-x:auto}"
)


def render_html(report: SimulationReport, comparison: Comparison | None = None) -> str:
    """The whole page as one string (UTF-8, no external references)."""
    summary = escape(report.to_text(limit=5)).replace("\n", "<br>")
    sections = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>leadflow backtest</title><style>{_STYLE}</style></head><body>",
        "<h1>leadflow backtest</h1>",
        f"<p>{summary}</p>",
        f"<div class='chart'>{workload_svg(report)}</div>",
        _table("activities per rule", report.activities_per_rule),
        _table("activities per rep", report.activities_per_rep),
        _table("notifications per template", report.notifications_per_template),
        _table("pending at the end, per rule", report.pending_at_end),
        _table("parked, per reason", report.parked),
        sequences_html(report) if comparison is None else "",
    ]
    if comparison is not None:
        text = escape(comparison.to_text()).replace("\n", "<br>")
        sections.append(f"<h2>compared with the other rule set</h2><p>{text}</p>")
        sections.append(sequences_html(report, comparison))
        sections.append(f"<div class='chart'>{workload_svg(comparison.after)}</div>")
    sections.append("</body></html>")
    return "\n".join(s for s in sections if s)
