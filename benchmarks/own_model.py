"""Bring your own model, measured: plain-PyTorch encoders through every command, the one-shot runs, 84x84x3.

    .venv/bin/python benchmarks/own_model.py [--out out/own_model] [--episodes 20] [--rtl-episodes 5]

1. Each encoder of tests/models/user_networks.py is written with torch.onnx.export as a user
   would, then taken through the CLI exactly as docs/own_model.md shows it:
   `metahw export encoder.onnx --head protonet --ways 5 --shots 1`, `metahw compile
   --episodes-from eps.npz` (8 bits, calibrated on the user's episodes), `metahw simulate
   --lanes 8 --episodes-from eps.npz` and `metahw simulate --rtl verilator`. eps.npz holds
   seeded 5-way 1-shot episodes with 5 queries from the Omniglot meta-test alphabets (for the
   3x32x32 encoder: the same images resized to 32x32 and repeated over 3 channels).
2. 20 runs in the official one-shot layout (20-way, within-alphabet, from the meta-test
   alphabet Korean: the official evaluation alphabets are not in ../shared/data): error of
   zoo:protonet in float (`metahw eval --runs`) and on the 8-bit simulator (`metahw simulate
   --runs`).
3. The Conv-4-64 encoder on 84x84x3 (miniImageNet size): compiled, its RTL built, and its
   memories compared with every target's block memory.

Prints tables and writes OUT/own_model.json. Nothing here is a test: the numbers go into
docs/own_model.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from metahw.atomic import write_text_atomic  # noqa: E402
from metahw.hw.synth.devices import DEVICES  # noqa: E402
from metahw.models.data import load_omniglot  # noqa: E402
from metahw.models.episodes import EpisodeSampler  # noqa: E402
from tests.models.omniglot_runs import write_runs  # noqa: E402
from tests.models.user_networks import NETWORKS, build, export_onnx, protonet_encoder  # noqa: E402

METAHW = str(ROOT / ".venv" / "bin" / "metahw")
ENCODERS = ("protonet64", "strided", "projection", "residual", "rgb32")


def run(*args: str) -> dict:
    """One metahw command with --json (where it has one); its parsed output, or the error it printed."""
    started = time.perf_counter()
    done = subprocess.run([METAHW, *args], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"metahw {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    out = done.stdout.strip()
    return (json.loads(out[out.index("{") :]) if "--json" in args else {"stdout": out}) | {"seconds": seconds}


def write_episodes(path: Path, shape: tuple[int, int, int], episodes: int, seed: int) -> None:
    """Seeded 5-way 1-shot, 5-query meta-test episodes as eps.npz, resized and repeated to `shape`."""
    sampler = EpisodeSampler(load_omniglot().split("test"), 5, 1, 1, seed=seed)
    drawn = [sampler.sample() for _ in range(episodes)]

    def fit(x: np.ndarray) -> np.ndarray:
        c, h, w = shape
        if (h, w) != x.shape[-2:]:
            x = np.stack([np.asarray(Image.fromarray(i[0]).resize((w, h), Image.BILINEAR))[None] for i in x])
        return np.repeat(x, c, axis=1).astype(np.float32)

    arrays = {
        "support_x": np.stack([fit(e.support_x) for e in drawn]),
        "support_y": np.stack([e.support_y for e in drawn]),
        "query_x": np.stack([fit(e.query_x) for e in drawn]),
        "query_y": np.stack([e.query_y for e in drawn]),
    }
    np.savez(path, **arrays)


def encoder_row(name: str, out: Path, episodes: int, rtl_episodes: int) -> dict:
    """Export, compile, simulate and Verilator-check one user encoder."""
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    shape = NETWORKS[name].input_shape
    encoder = export_onnx(build(name), shape, folder / "encoder.onnx")
    eps = folder / "eps.npz"
    write_episodes(eps, shape, episodes, seed=3)
    episode = str(folder / "episode.onnx")
    exported = run(
        "export",
        str(encoder),
        "--head",
        "protonet",
        "--ways",
        "5",
        "--shots",
        "1",
        "-o",
        episode,
        "--check-episodes",
        "20",
        "--json",
        "--no-progress",
    )
    build_dir = str(folder / "build")
    run("compile", episode, "-o", build_dir, "--queries", "5", "--episodes-from", str(eps))
    sim = run("simulate", build_dir, "--lanes", "8", "--episodes-from", str(eps), "--json", "--no-progress")
    rtl = run(
        "simulate",
        build_dir,
        "--lanes",
        "8",
        "--rtl",
        "verilator",
        "--episodes-from",
        str(eps),
        "--episodes",
        str(rtl_episodes),
        "--json",
        "--no-progress",
    )
    return {
        "encoder": name,
        "input": list(shape),
        "onnxruntime_vs_pytorch": exported["check"]["max_relative_error"],
        "ops": sorted({s["op"] for s in sim["steps"]}),
        "golden_matched": f"{sim['golden_matched']}/{sim['episodes']}",
        "cycles": sim["cycles"],
        "rtl_matched": f"{rtl['matched']}/{rtl['episodes']}",
        "rtl_cycle_difference": rtl["rtl_cycles"] - rtl["sim_cycles"],
    }


def runs_row(out: Path) -> dict:
    """Float and 8-bit error of zoo:protonet on 20 official-layout runs from the meta-test alphabet Korean."""
    root = out / "runs"
    if not root.exists():
        write_runs(_data(), root, {f"run{k:02d}": ("Korean", 20) for k in range(1, 21)}, seed=0)
    float_eval = run("eval", "zoo:protonet", "--runs", str(root), "--json")
    episode = str(out / "protonet20.onnx")
    run("export", "zoo:protonet", "--ways", "20", "--shots", "1", "-o", episode, "--check-episodes", "0")
    row = {"float_error": float_eval["runs"]["full"]["mean_error"]}
    for label, options in (("sim8_error", []), ("sim8_per_channel_error", ["--per-channel"])):
        build_dir = str(out / f"protonet20{'_'.join(options)}")
        run("compile", episode, "-o", build_dir, "--queries", "20", "--bits", "8", *options)
        sim = run("simulate", build_dir, "--lanes", "8", "--runs", str(root), "--json", "--no-progress")
        row[label] = sim["runs"]["simulator"]["mean_error"]
        row[f"{label}_golden_matched"] = f"{sim['golden_matched']}/{sim['episodes']}"
    return row


def _data() -> Path:
    """The Omniglot zips (as the CLI finds them)."""
    return Path(os.environ.get("METAHW_DATA", ROOT.parent / "shared" / "data" / "omniglot"))


def mini_imagenet_row(out: Path) -> dict:
    """Conv-4-64 on 84x84x3: compile, build the RTL at P = 8, and compare its memories with each target."""
    folder = out / "conv4_84"
    folder.mkdir(parents=True, exist_ok=True)
    encoder = export_onnx(protonet_encoder(64, channels=3).eval(), (3, 84, 84), folder / "encoder.onnx")
    eps = folder / "eps.npz"
    write_episodes(eps, (3, 84, 84), 4, seed=5)
    episode = str(folder / "episode.onnx")
    run(
        "export",
        str(encoder),
        "--head",
        "protonet",
        "--ways",
        "5",
        "--shots",
        "1",
        "-o",
        episode,
        "--check-episodes",
        "2",
    )
    build_dir = folder / "build"
    run("compile", episode, "-o", str(build_dir), "--queries", "5", "--episodes-from", str(eps))
    default = subprocess.run(
        [METAHW, "build", str(build_dir), "--backend", "amaranth", "--lanes", "8", "-o", str(folder / "rtl_default")],
        capture_output=True,
        text=True,
    )
    refusal = default.stderr.strip().removeprefix("metahw: error: ") if default.returncode else None
    config = folder / "hardware.json"  # memories as large as this network needs
    config.write_text(
        json.dumps(
            {"format": "metahw.hardware", "version": 1, "lanes": 8, "act_bytes": 1 << 18, "weight_bytes": 1 << 18}
        )
    )
    rtl_dir = folder / "rtl"
    run("build", str(build_dir), "--backend", "amaranth", "--lanes", "8", "--config", str(config), "-o", str(rtl_dir))
    manifest = json.loads((rtl_dir / "manifest.json").read_text())
    kbit = sum(m["bits"] for m in manifest["memories"]) / 1024
    amem = max(m["bits"] for m in manifest["memories"] if m["name"].startswith("amem")) / 1024
    targets = {n: {"memory_kbit": d.memory_kbit, "fits_memory": kbit <= d.memory_kbit} for n, d in DEVICES.items()}
    return {
        "default_config": refusal or "builds",
        "memory_kbit": round(kbit, 1),
        "largest_activation_bank_kbit": round(amem, 1),
        "targets": targets,
    }


def main() -> None:
    """Run all three parts; print the tables; write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "own_model")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--rtl-episodes", type=int, default=5)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = [encoder_row(name, args.out, args.episodes, args.rtl_episodes) for name in ENCODERS]
    print(f"{'encoder':<12} {'input':<10} {'ort err':>8} {'golden':>7} {'cycles':>12} {'RTL':>5} {'cyc diff':>8}")
    for r in rows:
        shape = "x".join(map(str, r["input"]))
        print(
            f"{r['encoder']:<12} {shape:<10} {r['onnxruntime_vs_pytorch']:>8.1e} {r['golden_matched']:>7} "
            f"{r['cycles']:>12,} {r['rtl_matched']:>5} {r['rtl_cycle_difference']:>8}"
        )
    runs = runs_row(args.out)
    print(
        f"20 runs (Korean, 20-way 1-shot): float error {runs['float_error']:.2f} %, 8-bit simulator "
        f"{runs['sim8_error']:.2f} % (per-channel weights {runs['sim8_per_channel_error']:.2f} %), golden "
        f"{runs['sim8_error_golden_matched']}, {runs['sim8_per_channel_error_golden_matched']}"
    )
    mini = mini_imagenet_row(args.out)
    print(f"Conv-4-64 84x84x3, default hardware config: {mini['default_config']}")
    print(
        f"Conv-4-64 84x84x3 at P = 8 with 256 KiB activation banks: {mini['memory_kbit']:,} kbit of memories "
        "(largest activation bank "
        f"{mini['largest_activation_bank_kbit']:,} kbit)"
    )
    for name, t in mini["targets"].items():
        print(f"  {name:<12} {t['memory_kbit']:>6,} kbit block memory: {'fits' if t['fits_memory'] else 'too small'}")
    write_text_atomic(
        args.out / "own_model.json", json.dumps({"encoders": rows, "runs": runs, "conv4_84": mini}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
