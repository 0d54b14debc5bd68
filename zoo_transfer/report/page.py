"""The report's HTML page: self-contained, linking the PNGs beside it."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from zoo_transfer.report.content import (
    _INFO_KEYS,
    _LOWER_IS_BETTER,
    CONFUSION_PNG,
    CURVES_PNG,
    MAX_MISCLASSIFIED,
    MISCLASSIFIED_PNG,
    EventMarker,
    _n_epochs,
)

# ---------------------------------------------------------------------- html
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1150px;
       color: #222; padding: 0 1rem; }
h1 { font-size: 1.6rem; }
h2 { font-size: 1.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; margin-top: 2rem; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: .25rem .6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f3f3f3; }
pre { background: #f6f6f6; padding: .8rem; overflow-x: auto; }
.note { color: #666; }
""".strip()


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if value.is_integer() and abs(value) >= 1:
        return f"{int(value):,}"
    return f"{value:.4f}"


def _metric_rows(hist: Mapping[str, list[float]]) -> list[tuple[str, str, str, str]]:
    rows = []
    for key, values in hist.items():
        if not values:
            rows.append((key, "-", "-", "-"))
            continue
        final = _fmt(values[-1])
        finite = [(v, i) for i, v in enumerate(values) if not math.isnan(v)]
        if key in _INFO_KEYS or not finite:
            rows.append((key, final, "-", "-"))
            continue
        lower = any(word in key for word in _LOWER_IS_BETTER)
        best, at = (min if lower else max)(finite, key=lambda item: item[0])
        rows.append((key, final, _fmt(best), str(at + 1)))
    return rows


def _img(src: str, alt: str) -> str:
    return f'<img src="{html.escape(src)}" alt="{html.escape(alt)}">'


def _html(
    *,
    title: str,
    hist: Mapping[str, list[float]],
    markers: Sequence[EventMarker],
    matrix: Any,
    names: Sequence[str],
    n_misclassified: int,
    config_json: str | None,
    written: Sequence[str],
    probe_line: str = "",
    notes: Sequence[str] = (),
    model_choice: Sequence[tuple[str, ...]] | None = None,
) -> str:
    esc = html.escape
    n_epochs = _n_epochs(hist)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        f"<style>\n{_CSS}\n</style>",
        "</head>",
        "<body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="note">{n_epochs} epoch{"s" if n_epochs != 1 else ""}, '
        f"{len(markers)} event{'s' if len(markers) != 1 else ''}.</p>",
        "<h2>Training curves</h2>",
        _img(
            CURVES_PNG,
            "Training and validation loss and accuracy per epoch, with a "
            "vertical marker at each training event",
        ),
        "<h2>Metrics</h2>",
    ]
    if probe_line:
        parts.append(f'<p id="probe">{esc(probe_line)}</p>')
    parts += [f'<p class="note">{esc(note)}</p>' for note in notes]
    rows = _metric_rows(hist)
    if rows:
        parts.append('<table id="metrics">')
        parts.append(
            "<thead><tr><th>metric</th><th>final</th><th>best</th><th>best epoch</th>"
            "</tr></thead><tbody>"
        )
        for row in rows:
            parts.append("<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>")
        parts.append("</tbody></table>")
    else:
        parts.append('<p class="note">No metrics recorded.</p>')

    if model_choice is not None:
        parts.append("<h2>Model choice</h2>")
        parts.append(
            '<p class="note">zoo-transfer rank: each candidate\'s frozen features scored '
            "before training (LogME; LEEP where it kept its classifier), best first.</p>"
        )
        parts.append('<table id="model-choice">')
        parts.append(
            "<thead><tr><th>rank</th><th>model</th><th>weights</th><th>LogME</th>"
            "<th>LEEP</th><th>seconds</th><th>trained here</th></tr></thead><tbody>"
        )
        for row in model_choice:
            parts.append("<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>")
        parts.append("</tbody></table>")

    parts.append("<h2>Events</h2>")
    if markers:
        parts.append('<ol id="events">')
        for marker in markers:
            parts.append(f"<li>epoch {marker.epoch + 1}: {esc(marker.label)}</li>")
        parts.append("</ol>")
    else:
        parts.append('<p class="note">No events.</p>')

    parts.append("<h2>Confusion matrix</h2>")
    if matrix is not None:
        parts.append(
            _img(
                CONFUSION_PNG,
                "Confusion matrix of the validation set, rows true "
                "class, columns predicted class: " + ", ".join(names),
            )
        )
    else:
        parts.append('<p class="note">No confusion matrix given.</p>')

    parts.append("<h2>Misclassified validation images</h2>")
    shown = min(n_misclassified, MAX_MISCLASSIFIED)
    if n_misclassified:
        parts.append(f'<p class="note">{n_misclassified} misclassified, {shown} shown.</p>')
    parts.append(
        _img(
            MISCLASSIFIED_PNG,
            f"Grid of {shown} misclassified validation images with their true and predicted class"
            if shown
            else "No misclassified validation images",
        )
    )

    parts.append("<h2>Config</h2>")
    if config_json is not None:
        parts.append(f'<pre id="config">{esc(config_json)}</pre>')
    else:
        parts.append('<p class="note">No config given.</p>')

    parts.append('<h2>Files</h2><ul id="files">')
    parts += [f"<li>{esc(name)}</li>" for name in written]
    parts += ["</ul>", "</body>", "</html>", ""]
    return "\n".join(parts)
