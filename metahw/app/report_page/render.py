"""Write the report: report.json, the PNG plots, and one self-contained report.html."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import jinja2

from metahw.app.report_page import figures, view
from metahw.app.report_page.schema import not_run_reason, validate
from metahw.atomic import atomic_path, write_text_atomic

TEMPLATES = Path(__file__).parent / "templates"

#: plot file stem -> (the section it draws, how to draw it from that section)
PLOTS: dict[str, tuple[str, Callable[[dict], bytes]]] = {
    "accuracy_vs_bits": ("accuracy", figures.accuracy_vs_bits),
    "cycles_per_kernel": ("performance", lambda perf: figures.cycles_per_kernel(perf["kernels"])),
    "resources": ("resources", figures.resources),
}


def render_report(data: dict, out_dir: Path) -> Path:
    """Validate `data` and write report.json, the plots and report.html into `out_dir`; return the HTML path.

    A plot whose section was not run is not drawn, and a stale copy of it in `out_dir` is removed.
    Raises `UserError` naming the first missing or ill-typed key of `data`.
    """
    validate(data)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "report.json", json.dumps(data, indent=2) + "\n")
    uris = {}
    for stem, (section, draw) in PLOTS.items():
        path = out_dir / f"{stem}.png"
        if not_run_reason(data[section]) is not None:
            path.unlink(missing_ok=True)
            continue
        png = draw(data[section])
        with atomic_path(path) as tmp:
            tmp.write_bytes(png)
        uris[stem] = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    html = _environment().get_template("report.html.j2").render(**view.build(data, uris))
    target = out_dir / "report.html"
    write_text_atomic(target, html)
    return target


def _environment() -> jinja2.Environment:
    loader = jinja2.FileSystemLoader(TEMPLATES)
    return jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True)
