"""A realistic report (ProtoNet 5-way 1-shot at 8 bits on an ECP5, one failed rung), the page's expected text,
and a visible-text extractor."""

from __future__ import annotations

import math
from html.parser import HTMLParser

KERNELS = [
    ("support.block0 Conv2d+ReLU+pool", 40_515, 0.9942),
    ("support.block1 Conv2d+ReLU+pool", 118_080, 1.0),
    ("support.block2 Conv2d+ReLU+pool", 29_520, 1.0),
    ("support.block3 Conv2d+ReLU+pool", 7_380, 0.9961),
    ("prototypes PrototypeAccumulate", 1_311, None),
    ("query.block0 Conv2d+ReLU+pool", 607_725, 0.9942),
    ("query.block1 Conv2d+ReLU+pool", 1_771_200, 1.0),
    ("query.block2 Conv2d+ReLU+pool", 442_800, 1.0),
    ("query.block3 Conv2d+ReLU+pool", 110_700, 0.9961),
    ("distance Distance", 1_845, 0.6667),
    ("prediction ArgMin", 161, None),
]


def report() -> dict:
    """The realistic report data (a new dict on every call)."""
    return {
        "title": "ProtoNet on ECP5-85: build report",
        "model": {"checkpoint": "zoo:protonet", "algorithm": "protonet", "width": 64, "depth": 4},
        "episode": {"ways": 5, "shots": 1, "queries": 75},
        "bits": 8,
        "accuracy": {
            "episodes": 1000,
            "float": {"accuracy": 0.9694, "ci95": 0.0047},
            "fixed": {"accuracy": 0.9690, "ci95": 0.0048},
            "agreement_with_float": 0.9953,
            "by_bits": {"4": {"accuracy": 0.9548, "ci95": 0.0069}, "8": {"accuracy": 0.9690, "ci95": 0.0048}},
        },
        "numerics": {
            "sqnr_db": {"block0.relu": 38.42, "block1.relu": 31.07, "block2.relu": 27.93, "logits": math.inf},
            "saturation": {"query.block0.out": 0, "support.block3.out": 12, "scores": 3},
        },
        "performance": {
            "lanes": 16,
            "groups": 2,
            "conv": "direct",
            "clock_mhz": 100.0,
            "fmax_mhz": 87.34,
            "total_cycles": 3_512_846,
            "adaptation_cycles": 245_331,
            "query_cycles": 3_267_515,
            "kernels": [{"label": label, "cycles": c, "utilisation": u} for label, c, u in KERNELS],
        },
        "resources": {
            "target": "LFE5U-85F",
            "used": {"LUT": 21_874, "FF": 15_120, "DSP": 32, "BRAM": 118},
            "capacity": {"LUT": 83_640, "FF": 83_640, "DSP": 156, "BRAM": 208},
            "fits": True,
            "fmax_mhz": 87.34,
            "suggestions": ["BRAM is the tightest resource: keep the query buffer at 75 images or fewer."],
        },
        "hardware_accuracy": {
            "source": "hardware_accuracy.json shipped with the zoo, benchmarks/hardware_accuracy.py",
            "lanes": 16,
            "rows": [
                {
                    "setting": "5w1s",
                    "episodes": 1000,
                    "float": {"accuracy": 0.9694, "ci95": 0.0028},
                    "8-bit": {"accuracy": 0.9690, "ci95": 0.0028},
                    "4-bit": {"accuracy": 0.9681, "ci95": 0.0029},
                    "4-bit quantisation": "QAT",
                }
            ],
        },
        "verification": [
            {"rung": "onnxruntime vs PyTorch", "status": "pass", "episodes": 1000, "detail": "max rel. error 3.1e-06"},
            {"rung": "golden executor", "status": "pass", "episodes": 1000, "detail": "reference integers"},
            {
                "rung": "cycle simulator vs golden",
                "status": "pass",
                "episodes": 100,
                "detail": "0 mismatches; cycles = formula",
            },
            {
                "rung": "Verilator RTL vs simulator",
                "status": "fail",
                "episodes": 20,
                "detail": "3 of 20 episodes mismatched, first at cycle 18,432 (scores[2])",
            },
            {"rung": "hls4ml C simulation", "status": "not run", "episodes": None, "detail": "g++ not found"},
            {"rung": "synthesis/PnR", "status": "pass", "episodes": None, "detail": "yosys + nextpnr-ecp5"},
        ],
    }


#: Every number of `report()` as the page writes it.
EXPECTED_TEXT = [
    "zoo:protonet",
    "protonet",
    "width 64, depth 4",
    "5-way 1-shot, 75 queries",
    "8-bit fixed point",
    "accuracy on the cycle simulator (P = 16",
    "5w1s",
    "96.94 % ± 0.28 %",
    "96.81 % ± 0.29 %",
    "QAT",
    "1,000",
    "96.94 %",
    "± 0.47 %",
    "96.90 %",
    "± 0.48 %",
    "99.53 %",
    "-0.04 pp",
    "95.48 %",
    "± 0.69 %",
    "38.4",
    "31.1",
    "27.9",
    "exact",
    "12",
    "3,512,846",
    "245,331",
    "6.98 %",
    "3,267,515",
    "93.02 %",
    "43,567 cycles",
    "16 lanes in 2 group(s)",
    "100.0 MHz",
    "87.3 MHz",
    "35.128 ms",
    "28.5",
    "2,135.0",
    "40.220 ms",
    "24.9",
    "1,864.7",
    "1,771,200",
    "50.42 %",
    "99.42 %",
    "66.67 %",
    "40,515",
    "LFE5U-85F",
    "21,874",
    "83,640",
    "26.15 %",
    "15,120",
    "18.08 %",
    "32",
    "156",
    "20.51 %",
    "118",
    "208",
    "56.73 %",
    "BRAM is the tightest resource",
    "0 mismatches; cycles = formula",
    "3 of 20 episodes mismatched, first at cycle 18,432 (scores[2])",
    "g++ not found",
    "FAIL",
    "failed: Verilator RTL vs simulator",
]


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.hidden += tag in ("style", "title")

    def handle_endtag(self, tag: str) -> None:
        self.hidden -= tag in ("style", "title")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def visible_text(html: str) -> str:
    """The text content of an HTML document (no tags, no attributes), whitespace collapsed."""
    parser = _Text()
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())
