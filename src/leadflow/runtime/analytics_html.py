"""The analytics dashboard as one self-contained HTML page (:func:`dashboard_html`): the funnel,
lead sources, the speed-to-lead distribution and the weekly trend as inline SVG bar charts, the
leaderboard and automation as tables. No scripts, no external assets: it opens from a file or
an e-mail."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from .analytics import Dashboard

__all__ = ["bar_svg", "dashboard_html"]

_BAR = 22
_LEFT = 150
_WIDTH = 360


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 3600:
        return f"{value / 60:.1f} min"
    if value < 86400:
        return f"{value / 3600:.1f} h"
    return f"{value / 86400:.1f} d"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def bar_svg(title: str, rows: Sequence[tuple[str, Sequence[int]]], legend: Sequence[str]) -> str:
    """Horizontal bars: one group per row (its label and one value per ``legend`` entry), each
    bar scaled to the largest value and labelled with it."""
    colors = ("#3b6ea8", "#7fb069", "#e0a458")
    peak = max((value for _, values in rows for value in values), default=0) or 1
    per_row = _BAR * max(1, len(legend)) + 8
    height = 40 + per_row * max(1, len(rows)) + 10
    width = _LEFT + _WIDTH + 80
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="4" y="18" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    for n, name in enumerate(legend):
        x = _LEFT + 120 * n
        parts.append(f'<rect x="{x}" y="26" width="10" height="10" fill="{colors[n % 3]}"/>')
        parts.append(f'<text x="{x + 14}" y="35" font-size="11">{escape(name)}</text>')
    if not rows:
        parts.append('<text x="4" y="60" font-size="12">no data in this period</text>')
    for row, (label, values) in enumerate(rows):
        top = 44 + row * per_row
        parts.append(
            f'<text x="{_LEFT - 6}" y="{top + _BAR - 6}" font-size="12" '
            f'text-anchor="end">{escape(label[:24])}</text>'
        )
        for n, value in enumerate(values):
            y = top + n * _BAR
            length = round(_WIDTH * value / peak)
            parts.append(
                f'<rect x="{_LEFT}" y="{y}" width="{length}" height="{_BAR - 4}" '
                f'fill="{colors[n % 3]}"><title>{escape(label)}: {value}</title></rect>'
            )
            parts.append(
                f'<text x="{_LEFT + length + 4}" y="{y + _BAR - 8}" font-size="11">{value}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    cells = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def dashboard_html(dashboard: Dashboard, *, title: str = "leadflow analytics") -> str:
    """The page: headline figures, then each chart and table."""
    speed = dashboard.speed_to_lead.overall
    period = f"{dashboard.start:%Y-%m-%d %H:%M} to {dashboard.end:%Y-%m-%d %H:%M} UTC"
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{escape(title)}</title><style>",
        "body{font-family:system-ui,sans-serif;margin:24px;color:#222}"
        "table{border-collapse:collapse;margin:8px 0 24px}"
        "td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}"
        "th{background:#f0f3f7}td:first-child,th:first-child{text-align:left}"
        ".figures span{display:inline-block;margin:0 24px 16px 0;font-size:15px}"
        ".figures b{display:block;font-size:26px}",
        "</style></head><body>",
        f"<h1>{escape(title)}</h1><p>{escape(period)}; judged at "
        f"{dashboard.as_of:%Y-%m-%d %H:%M} UTC</p>",
        "<div class='figures'>",
        f"<span><b>{speed.leads}</b>leads</span>",
        f"<span><b>{speed.contacted}</b>contacted</span>",
        f"<span><b>{_seconds(speed.p50_seconds)}</b>speed to lead, median</span>",
        f"<span><b>{_seconds(speed.p90_seconds)}</b>speed to lead, p90</span>",
        f"<span><b>{_rate(speed.within_5_minutes)}</b>within 5 min</span>",
        f"<span><b>{_rate(speed.within_1_hour)}</b>within 1 h</span>",
        f"<span><b>{_rate(speed.within_1_business_day)}</b>within 1 business day</span>",
        "</div>",
    ]
    if dashboard.funnel is not None:
        funnel = dashboard.funnel
        parts.append("<h2>funnel</h2>")
        parts.append(
            bar_svg(
                "opportunities per stage",
                [(s, [n]) for s, n in zip(funnel.stages, funnel.reached, strict=True)],
                ["reached"],
            )
        )
        parts.append(
            _table(
                ["from", "to", "advanced", "conversion", "drop-off", "median time in stage"],
                [
                    [
                        s.from_stage,
                        s.to_stage,
                        str(s.advanced),
                        _rate(s.conversion),
                        str(s.drop_off),
                        _seconds(stay),
                    ]
                    for s, stay in zip(
                        funnel.steps, funnel.median_time_in_stage_seconds, strict=False
                    )
                ],
            )
        )
    parts.append("<h2>lead sources</h2>")
    parts.append(
        bar_svg(
            "leads, contacted and won per source",
            [(r.source, [r.leads, r.contacted, r.won]) for r in dashboard.sources],
            ["leads", "contacted", "won"],
        )
    )
    parts.append(
        _table(
            ["source", "leads", "contacted", "won", "conversion", "median time to win"],
            [
                [
                    r.source,
                    str(r.leads),
                    str(r.contacted),
                    str(r.won),
                    _rate(r.conversion_rate),
                    _seconds(r.median_time_to_win_seconds),
                ]
                for r in dashboard.sources
            ],
        )
    )
    parts.append("<h2>speed to lead</h2>")
    parts.append(
        bar_svg(
            "contacted leads by response time",
            [(bucket, [n]) for bucket, n in speed.buckets.items()],
            ["leads"],
        )
    )
    parts.append("<h2>trend over weeks</h2>")
    parts.append(
        bar_svg(
            "leads, contacted and won per ISO week",
            [(w.week, [w.leads, w.contacted, w.won]) for w in dashboard.trend],
            ["leads", "contacted", "won"],
        )
    )
    parts.append(
        _table(
            ["week", "leads", "won", "speed to lead (median)", "completed", "on time"],
            [
                [
                    w.week,
                    str(w.leads),
                    str(w.won),
                    _seconds(w.speed_to_lead_p50_seconds),
                    str(w.completed),
                    _rate(w.on_time_rate),
                ]
                for w in dashboard.trend
            ],
        )
    )
    parts.append("<h2>leaderboard</h2>")
    parts.append(
        _table(
            [
                "rep",
                "completed",
                "on time",
                "median to complete",
                "overdue now",
                "speed to lead (median)",
                "wins",
            ],
            [
                [
                    r.rep,
                    str(r.completed),
                    _rate(r.on_time_rate),
                    _seconds(r.median_time_to_complete_seconds),
                    str(r.overdue_now),
                    _seconds(r.speed_to_lead_p50_seconds),
                    str(r.wins),
                ]
                for r in dashboard.leaderboard
            ],
        )
    )
    parts.append("<h2>automation (last-touch wins)</h2>")
    parts.append(
        _table(
            [
                "automation",
                "kind",
                "activities created",
                "of them done",
                "completed in period",
                "outcomes",
                "opportunities touched",
                "converted",
                "wins",
                "win rate",
                "median to goal",
                "effect",
            ],
            [
                [
                    r.automation_id,
                    r.kind,
                    str(r.created),
                    _rate(r.completion_share),
                    str(r.completed),
                    ", ".join(f"{k} {v}" for k, v in r.outcomes.items()) or "-",
                    str(r.touched),
                    str(r.converted),
                    str(r.wins),
                    _rate(r.win_rate),
                    _seconds(r.median_time_to_goal_seconds),
                    "NO EFFECT" if r.no_effect else "",
                ]
                for r in dashboard.automation
            ],
        )
    )
    branches = [(r.automation_id, b) for r in dashboard.automation for b in r.branches]
    if branches:
        parts.append("<h2>sequence A/B branches</h2>")
        parts.append(
            _table(
                ["sequence", "split", "variant", "enrolled", "goal reached", "conversion",
                 "median to goal", "completed", "won"],
                [
                    [
                        sequence,
                        b.step_id,
                        b.variant,
                        str(b.enrolled),
                        str(b.goal_reached),
                        _rate(b.conversion_rate),
                        _seconds(b.median_time_to_goal_seconds),
                        str(b.completed),
                        str(b.won),
                    ]
                    for sequence, b in branches
                ],
            )
        )  # fmt: skip
    parts.append("</body></html>")
    return "\n".join(parts)
