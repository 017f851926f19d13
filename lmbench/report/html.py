"""The HTML report: one self-contained file rendered from a jinja2 template (autoescaped)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from lmbench import __version__
from lmbench.report.frames import ExperimentData
from lmbench.stats import CONFIDENCE


def data_value(v: Any) -> str:
    """A cell's raw value for the sort script: full-precision numbers, '' for NaN/None."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, int | float):
        return repr(float(v)) if isinstance(v, float) else str(v)
    return str(v)


def environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined

    # autoescape everything: names, samples and specs are user data and must never become markup
    env = Environment(loader=PackageLoader("lmbench.report", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["dv"] = data_value
    return env


def render_html(data: ExperimentData, parts: list[dict[str, Any]]) -> str:
    """The whole report as one HTML string (images are already base64 data URIs in ``parts``)."""
    template = environment().get_template("report.html.j2")
    return template.render(name=data.name, tracking_uri=data.tracking_uri, sections=parts, version=__version__,
                           level=f"{CONFIDENCE:.0%}",
                           built=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
