"""A bar chart drawn on the server as inline SVG: no script, readable as text."""

from __future__ import annotations

from markupsafe import Markup, escape

WIDTH = 720
BAR_AREA = 200
LABEL_SPACE = 56


def bar_chart(points: list[tuple[str, int]], *, title: str) -> Markup:
    """Return an SVG bar chart of ``(label, value)`` points with a text title."""
    if not points:
        return Markup("")
    top = max(value for _, value in points) or 1
    slot = WIDTH / len(points)
    bar = max(4.0, slot * 0.7)
    height = BAR_AREA + LABEL_SPACE
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH + 48} {height}" role="img" '
        f'aria-label="{escape(title)}" preserveAspectRatio="xMidYMid meet">',
        f"<title>{escape(title)}</title>",
        f'<line x1="0" y1="{BAR_AREA}" x2="{WIDTH}" y2="{BAR_AREA}" class="axis"/>',
    ]
    # Label every bar when they fit, else every n-th, so text never overlaps.
    every = max(1, round(len(points) / 16))
    for index, (label, value) in enumerate(points):
        bar_height = round(value / top * (BAR_AREA - 20))
        x = index * slot + (slot - bar) / 2
        y = BAR_AREA - bar_height
        parts.append(
            f'<rect x="{x:.1f}" y="{y}" width="{bar:.1f}" height="{bar_height}" '
            f'class="bar"><title>{escape(label)}: {value}</title></rect>'
        )
        if value:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{y - 4}" class="value">{value}</text>'
            )
        if index % every == 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{BAR_AREA + 16}" class="label" '
                f'transform="rotate(35 {x + bar / 2:.1f} {BAR_AREA + 16})">'
                f"{escape(label)}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))
