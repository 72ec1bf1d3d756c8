"""The per-build hardware report: one self-contained HTML page, its data as JSON, and its plots.

`render_report(data, out_dir)` writes into `out_dir`:

- `report.html`: one page, CSS inline, plots embedded as base64 PNG data URIs (it can be mailed);
- `report.json`: `data`, exactly;
- `accuracy_vs_bits.png`, `cycles_per_kernel.png`, `resources.png` (each only if its section ran).

Every file is written atomically. `data` follows this schema (every key is required; a missing
or ill-typed one raises `metahw.errors.UserError` naming it)::

    {"title": str,
     "model": {"checkpoint": str, "algorithm": str, "width": int, "depth": int},
     "episode": {"ways": int, "shots": int, "queries": int},     # queries: query images per episode
     "bits": int,
     "accuracy": SECTION | {"episodes": int,
                            "float": {"accuracy": float, "ci95": float},  # fractions in [0, 1]
                            "fixed": {"accuracy": float, "ci95": float},
                            "agreement_with_float": float,
                            "by_bits": {"4": {"accuracy": float, "ci95": float}, ...}},  # one entry or more
     "numerics": SECTION | {"sqnr_db": {layer: float},             # inf: no quantisation noise
                            "saturation": {tensor: int}},
     "performance": SECTION | {"lanes": int, "groups": int, "conv": str,   # "direct" or "Winograd F(2x2, 3x3)"
                               "clock_mhz": float, "fmax_mhz": float | None,
                               "total_cycles": int, "adaptation_cycles": int, "query_cycles": int,
                               "kernels": [{"label": str, "cycles": int,
                                            "utilisation": float | None}, ...]},  # None: no MAC work
     "resources": SECTION | {"target": str,
                             "used": {"LUT": int, "FF": int, "DSP": int, "BRAM": int},
                             "capacity": {"LUT": int, "FF": int, "DSP": int, "BRAM": int},
                             "fits": bool, "fmax_mhz": float | None, "suggestions": [str, ...]},
     "hardware_accuracy": SECTION | {"source": str, "lanes": int,   # the checkpoint's row of the zoo table
                                     "rows": [{"setting": str, "episodes": int,   # "5w1s", ...
                                               "float": {"accuracy": float, "ci95": float},
                                               "8-bit": {...}, "4-bit": {...},
                                               "4-bit quantisation": str}, ...]},  # "QAT" or "post-training"
     "verification": [{"rung": str, "status": "pass" | "fail" | "not run",
                       "episodes": int | None, "detail": str}, ...]}

where `SECTION` is a section that was not run: `{"not_run": "<reason>"}` (or `null`, shown with
"no reason recorded"); the page shows it as "not run" with the reason. Latency and throughput
are given at the nominal clock and at the measured fmax (`performance.fmax_mhz`, else
`resources.fmax_mhz`) when there is one. Rungs of `RUNGS` that `verification` omits are shown
as not run. The header's verdict is FAIL if a rung failed or the design does not fit, PASS
(partial) if a rung was not run, else PASS.

`sections_from_compare(comparison, bits)` gives the `accuracy` and `numerics` sections from the
dict in `compare.json`.
"""

from metahw.app.report_page.from_compare import sections_from_compare
from metahw.app.report_page.render import render_report
from metahw.app.report_page.schema import validate
from metahw.app.report_page.view import RUNGS

__all__ = ["RUNGS", "render_report", "sections_from_compare", "validate"]
