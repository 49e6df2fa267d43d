"""A self-contained HTML report: the figures, and the workload per rep per day as an inline SVG
heat map (no scripts, no external assets: it opens from a file or an e-mail)."""

from __future__ import annotations

from datetime import date, timedelta
from html import escape

from .compare import Comparison
from .report import SimulationReport

__all__ = ["render_html"]

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


_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#212529}"
    "table{border-collapse:collapse;margin-bottom:1em}"
    "td{border:1px solid #dee2e6;padding:2px 8px}td:last-child{text-align:right}"
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
    ]
    if comparison is not None:
        text = escape(comparison.to_text()).replace("\n", "<br>")
        sections.append(f"<h2>compared with the other rule set</h2><p>{text}</p>")
        sections.append(f"<div class='chart'>{workload_svg(comparison.after)}</div>")
    sections.append("</body></html>")
    return "\n".join(s for s in sections if s)
