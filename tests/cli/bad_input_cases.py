"""Bad inputs to every `metahw` command, each with a fragment of the one sentence it must get.

Arguments may name {tmp} (the case's own folder, pre-filled by `scratch`) and the shared,
read-only fixtures {onnx} (a 5-way 1-shot zoo:protonet32 episode), {prog} (its 8-bit build),
{ckpt} (a checkpoint file), {v99} (the same with format_version 99), {single} (an ONNX graph
with one input) and {enc} (an embedding-only ONNX file).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Bad:
    """One bad command line: its arguments and a fragment of the sentence it gets (case-insensitive)."""

    argv: tuple[str, ...]
    says: str


def scratch(folder: Path) -> None:
    """The files a case may point at: a user's file, a user's folder, an empty folder, broken inputs."""
    (folder / "mine.txt").write_text("the user's own file\n")
    (folder / "theirs").mkdir()
    (folder / "theirs" / "notes.txt").write_text("the user's own notes\n")
    (folder / "empty").mkdir()
    (folder / "broken.json").write_text("{not json")
    (folder / "broken.pt").write_text("not a checkpoint")
    (folder / "broken.onnx").write_text("not an onnx file")
    (folder / "frac_x.json").write_text(json.dumps({"tensors": {"query.features": {"frac": "x"}}}))
    (folder / "bits_99.json").write_text(json.dumps({"tensors": {"query.features": {"bits": 99}}}))
    (folder / "unknown_tensor.json").write_text(json.dumps({"tensors": {"no.such.tensor": {"bits": 8}}}))
    (folder / "no_tensors.json").write_text(json.dumps({"bits": 8}))
    tag = {"format": "metahw.hardware", "version": 1}
    (folder / "hw_lanes_x.json").write_text(json.dumps({**tag, "lanes": "x"}))
    (folder / "hw_unknown.json").write_text(json.dumps({**tag, "lanez": 8}))
    np.savez(
        folder / "wrong.npz",
        support_x=np.zeros((5, 1, 14, 14), np.float32),
        support_y=np.arange(5),
        query_x=np.zeros((5, 1, 14, 14), np.float32),
    )


def _cases() -> dict[str, Bad]:
    c: dict[str, tuple[list[str], str]] = {
        # train
        "train: unknown --algo": (["train", "--algo", "nope", "-o", "{tmp}/x.pt"], "unknown or missing --algo"),
        "train: no --out": (["train", "--algo", "protonet"], "missing option"),
        "train: --out a folder": (["train", "--algo", "protonet", "-o", "{tmp}/theirs"], "is a folder"),
        "train: --out under a file": (["train", "--algo", "protonet", "-o", "{tmp}/mine.txt/x.pt"], "is a file"),
        "train: --out unwritable": (["train", "--algo", "protonet", "-o", "/proc/metahw/x.pt"], "cannot write"),
        "train: --device tpu": (["train", "--algo", "protonet", "--device", "tpu", "-o", "{tmp}/x.pt"], "--device"),
        "train: --episodes 0": (["train", "--algo", "protonet", "--episodes", "0", "-o", "{tmp}/x.pt"], "--episodes"),
        "train: --episodes -5": (["train", "--algo", "protonet", "--episodes", "-5", "-o", "{tmp}/x.pt"], "--episodes"),
        "train: --ways 1": (["train", "--algo", "protonet", "--ways", "1", "-o", "{tmp}/x.pt"], "--ways"),
        "train: --shots 0": (["train", "--algo", "protonet", "--shots", "0", "-o", "{tmp}/x.pt"], "--shots"),
        "train: --queries 0": (["train", "--algo", "protonet", "--queries", "0", "-o", "{tmp}/x.pt"], "--queries"),
        "train: --width 0": (["train", "--algo", "protonet", "--width", "0", "-o", "{tmp}/x.pt"], "--width"),
        "train: --depth 0": (["train", "--algo", "protonet", "--depth", "0", "-o", "{tmp}/x.pt"], "--depth"),
        "train: --lr -1": (["train", "--algo", "protonet", "--lr", "-1", "-o", "{tmp}/x.pt"], "--lr"),
        "train: --meta-batch 0": (["train", "--algo", "maml", "--meta-batch", "0", "-o", "{tmp}/x.pt"], "--meta-batch"),
        "train: --hparam no =": (["train", "--algo", "maml", "--hparam", "inner_lr", "-o", "{tmp}/x.pt"], "KEY=VALUE"),
        "train: --hparam unknown": (["train", "--algo", "maml", "--hparam", "nope=1", "-o", "{tmp}/x.pt"], "nope"),
        "train: --qat-bits 1": (["train", "--algo", "protonet", "--qat-bits", "1", "-o", "{tmp}/x.pt"], "--qat-bits"),
        "train: --init missing": (
            ["train", "--init", "{tmp}/none.pt", "--qat-bits", "8", "-o", "{tmp}/x.pt"],
            "does not exist",
        ),
        "train: --data missing": (
            ["train", "--algo", "protonet", "--data", "{tmp}/nodata", "-o", "{tmp}/x.pt"],
            "omniglot",
        ),
        "train: --episodes abc": (
            ["train", "--algo", "protonet", "--episodes", "abc", "-o", "{tmp}/x.pt"],
            "invalid value for '--episodes'",
        ),
        # eval
        "eval: missing checkpoint": (["eval", "{tmp}/none.pt"], "does not exist"),
        "eval: not a checkpoint": (["eval", "{tmp}/broken.pt"], "not a metahw checkpoint"),
        "eval: format_version 99": (["eval", "{v99}"], "format version 99"),
        "eval: unknown zoo model": (["eval", "zoo:nope"], "no shipped checkpoint"),
        "eval: --episodes 0": (["eval", "{ckpt}", "--episodes", "0"], "--episodes"),
        "eval: --episodes -1": (["eval", "{ckpt}", "--episodes", "-1"], "--episodes"),
        "eval: --ways 1": (["eval", "{ckpt}", "--ways", "1"], "--ways"),
        "eval: --ways 0": (["eval", "{ckpt}", "--ways", "0"], "--ways"),
        "eval: --shots 0": (["eval", "{ckpt}", "--shots", "0"], "--shots"),
        "eval: --queries 0": (["eval", "{ckpt}", "--queries", "0"], "--queries"),
        "eval: --ways 500": (["eval", "{ckpt}", "--ways", "500"], "500-way"),
        "eval: --mode nope": (["eval", "{ckpt}", "--mode", "nope"], "unknown --mode"),
        "eval: --split nope": (["eval", "{ckpt}", "--split", "nope"], "unknown split"),
        "eval: --runs missing": (["eval", "{ckpt}", "--runs", "{tmp}/noruns"], "noruns"),
        "eval: --runs a file": (["eval", "{ckpt}", "--runs", "{tmp}/mine.txt"], "mine.txt"),
        "eval: --episodes-from missing": (["eval", "{ckpt}", "--episodes-from", "{tmp}/none.npz"], "none.npz"),
        "eval: --episodes-from not npz": (["eval", "{ckpt}", "--episodes-from", "{tmp}/mine.txt"], "mine.txt"),
        "eval: --episodes-from wrong size": (["eval", "{ckpt}", "--episodes-from", "{tmp}/wrong.npz"], "wrong.npz"),
        "eval: --images missing": (["eval", "{ckpt}", "--images", "{tmp}/noimages"], "noimages"),
        "eval: --images empty": (["eval", "{ckpt}", "--images", "{tmp}/empty"], "empty"),
        "eval: two sources": (
            ["eval", "{ckpt}", "--images", "{tmp}/empty", "--episodes-from", "{tmp}/wrong.npz"],
            "one of",
        ),
        "eval: --predictions a folder": (
            ["eval", "{ckpt}", "--episodes", "2", "--predictions", "{tmp}/theirs"],
            "folder",
        ),
        "eval: --image-shape without --images": (["eval", "{ckpt}", "--image-shape", "1x28x28"], "--images"),
        # export
        "export: missing checkpoint": (["export", "{tmp}/none.pt", "-o", "{tmp}/x.onnx"], "does not exist"),
        "export: unknown zoo model": (["export", "zoo:nope", "-o", "{tmp}/x.onnx"], "no shipped checkpoint"),
        "export: no --out": (["export", "{ckpt}"], "missing option"),
        "export: --out a folder": (["export", "{ckpt}", "-o", "{tmp}/theirs"], "is a folder"),
        "export: --out under a file": (["export", "{ckpt}", "-o", "{tmp}/mine.txt/x.onnx"], "is a file"),
        "export: --out unwritable": (["export", "{ckpt}", "-o", "/proc/metahw/x.onnx"], "cannot write"),
        "compile: more ways than meta-val has": (["compile", "{w1000}", "-o", "{tmp}/b"], "--episodes-from"),
        "export: --ways 1": (["export", "{ckpt}", "--ways", "1", "-o", "{tmp}/x.onnx"], "--ways"),
        "export: --shots 0": (["export", "{ckpt}", "--shots", "0", "-o", "{tmp}/x.onnx"], "--shots"),
        "export: --check-episodes -1": (
            ["export", "{ckpt}", "--check-episodes", "-1", "-o", "{tmp}/x.onnx"],
            "--check-episodes",
        ),
        "export: --inner-steps -1": (
            ["export", "zoo:anil", "--inner-steps", "-1", "-o", "{tmp}/x.onnx"],
            "--inner-steps",
        ),
        "export: --tolerance -1": (["export", "{ckpt}", "--tolerance", "-1", "-o", "{tmp}/x.onnx"], "--tolerance"),
        "export: --head on a checkpoint": (
            ["export", "{ckpt}", "--head", "protonet", "-o", "{tmp}/x.onnx"],
            "embedding .onnx",
        ),
        "export: embedding without --head": (["export", "{enc}", "-o", "{tmp}/x.onnx"], "--head"),
        "export: embedding unknown --head": (["export", "{enc}", "--head", "nope", "-o", "{tmp}/x.onnx"], "nope"),
        "export: broken embedding": (
            ["export", "{tmp}/broken.onnx", "--head", "protonet", "-o", "{tmp}/x.onnx"],
            "broken.onnx",
        ),
        "export: missing embedding": (
            ["export", "{tmp}/none.onnx", "--head", "protonet", "-o", "{tmp}/x.onnx"],
            "none.onnx",
        ),
        # compile
        "compile: missing onnx": (["compile", "{tmp}/none.onnx", "-o", "{tmp}/b"], "none.onnx"),
        "compile: not onnx": (["compile", "{tmp}/broken.onnx", "-o", "{tmp}/b"], "broken.onnx"),
        "compile: single-input graph": (["compile", "{single}", "-o", "{tmp}/b"], "input"),
        "compile: no --out": (["compile", "{onnx}"], "missing option"),
        "compile: --out a file": (["compile", "{onnx}", "-o", "{tmp}/mine.txt"], "is a file"),
        "compile: --out a user's folder": (["compile", "{onnx}", "-o", "{tmp}/theirs"], "not an earlier build"),
        "compile: --out under a file": (["compile", "{onnx}", "-o", "{tmp}/mine.txt/b"], "is a file"),
        "compile: --out .": (["compile", "{onnx}", "-o", "."], "."),
        "compile: --out unwritable": (["compile", "{onnx}", "-o", "/proc/metahw/b"], "cannot write"),
        "compile: --bits 1": (["compile", "{onnx}", "--bits", "1", "-o", "{tmp}/b"], "--bits"),
        "compile: --bits 17": (["compile", "{onnx}", "--bits", "17", "-o", "{tmp}/b"], "--bits"),
        "compile: --head-bits 40": (["compile", "{onnx}", "--head-bits", "40", "-o", "{tmp}/b"], "--head-bits"),
        "compile: --rounding nope": (["compile", "{onnx}", "--rounding", "nope", "-o", "{tmp}/b"], "rounding"),
        "compile: --overflow nope": (["compile", "{onnx}", "--overflow", "nope", "-o", "{tmp}/b"], "overflow"),
        "compile: --overrides missing": (
            ["compile", "{onnx}", "--overrides", "{tmp}/none.json", "-o", "{tmp}/b"],
            "does not exist",
        ),
        "compile: --overrides broken": (
            ["compile", "{onnx}", "--overrides", "{tmp}/broken.json", "-o", "{tmp}/b"],
            "not valid json",
        ),
        "compile: --overrides frac x": (
            ["compile", "{onnx}", "--overrides", "{tmp}/frac_x.json", "-o", "{tmp}/b"],
            "frac must be an integer",
        ),
        "compile: --overrides bits 99": (
            ["compile", "{onnx}", "--overrides", "{tmp}/bits_99.json", "-o", "{tmp}/b"],
            "bits must be an integer",
        ),
        "compile: --overrides unknown tensor": (
            ["compile", "{onnx}", "--overrides", "{tmp}/unknown_tensor.json", "-o", "{tmp}/b"],
            "no.such.tensor",
        ),
        "compile: --overrides no tensors": (
            ["compile", "{onnx}", "--overrides", "{tmp}/no_tensors.json", "-o", "{tmp}/b"],
            "tensors",
        ),
        "compile: --queries 0": (["compile", "{onnx}", "--queries", "0", "-o", "{tmp}/b"], "--queries"),
        "compile: --calibration-episodes 0": (
            ["compile", "{onnx}", "--calibration-episodes", "0", "-o", "{tmp}/b"],
            "--calibration-episodes",
        ),
        "compile: --episodes-from wrong": (
            ["compile", "{onnx}", "--episodes-from", "{tmp}/wrong.npz", "-o", "{tmp}/b"],
            "wrong.npz",
        ),
        "compile: two sources": (
            ["compile", "{onnx}", "--episodes-from", "{tmp}/wrong.npz", "--images", "{tmp}/empty", "-o", "{tmp}/b"],
            "one of",
        ),
        "compile: --data missing": (["compile", "{onnx}", "--data", "{tmp}/nodata", "-o", "{tmp}/b"], "omniglot"),
        # compare
        "compare: --bits x": (["compare", "{ckpt}", "--bits", "x"], "comma-separated"),
        "compare: --bits 1": (["compare", "{ckpt}", "--bits", "1"], "2..16"),
        "compare: --episodes 1": (["compare", "{ckpt}", "--episodes", "1", "-o", "{tmp}/c"], "--episodes"),
        "compare: --out a file": (["compare", "{ckpt}", "--episodes", "2", "-o", "{tmp}/mine.txt"], "is a file"),
        "compare: --out unwritable": (["compare", "{ckpt}", "--episodes", "2", "-o", "/proc/metahw/c"], "cannot write"),
        "compare: missing checkpoint": (["compare", "{tmp}/none.pt", "-o", "{tmp}/c"], "does not exist"),
        "compare: --ways 1": (["compare", "{ckpt}", "--ways", "1", "--episodes", "2", "-o", "{tmp}/c"], "--ways"),
        "compare: --engine unknown": (
            ["compare", "{ckpt}", "--engine", "rtl", "-o", "{tmp}/c"],
            "golden and simulator",
        ),
        "compare: --lanes 3": (
            ["compare", "{ckpt}", "--engine", "simulator", "--lanes", "3", "-o", "{tmp}/c"],
            "power of two",
        ),
        "compare: --config missing": (
            ["compare", "{ckpt}", "--engine", "simulator", "--config", "{tmp}/none.json", "-o", "{tmp}/c"],
            "cannot read hardware config",
        ),
        "compare: --lanes without the simulator": (
            ["compare", "{ckpt}", "--lanes", "4", "-o", "{tmp}/c"],
            "--engine simulator",
        ),
        "compare: --predictions a folder": (
            ["compare", "{ckpt}", "--episodes", "2", "--predictions", "{tmp}/theirs", "-o", "{tmp}/c"],
            "folder",
        ),
        # simulate
        "simulate: no --lanes": (["simulate", "{prog}"], "--lanes"),
        "simulate: --lanes 3": (["simulate", "{prog}", "--lanes", "3"], "power of two"),
        "simulate: --lanes 0": (["simulate", "{prog}", "--lanes", "0"], "lanes"),
        "simulate: --groups 3": (["simulate", "{prog}", "--lanes", "8", "--groups", "3"], "groups"),
        "simulate: not a build": (["simulate", "{tmp}/theirs", "--lanes", "8"], "theirs"),
        "simulate: missing build": (["simulate", "{tmp}/none", "--lanes", "8"], "none"),
        "simulate: --rtl nope": (["simulate", "{prog}", "--lanes", "8", "--rtl", "nope"], "unknown --rtl"),
        "simulate: --stall-seed without --rtl": (
            ["simulate", "{prog}", "--lanes", "8", "--stall-seed", "3"],
            "--stall-seed",
        ),
        "simulate: --vcd a folder": (
            ["simulate", "{prog}", "--lanes", "8", "--episodes", "1", "--vcd", "{tmp}/theirs"],
            "is a folder",
        ),
        "simulate: --vcd unwritable": (
            ["simulate", "{prog}", "--lanes", "8", "--episodes", "1", "--vcd", "/proc/metahw/t.vcd"],
            "cannot write",
        ),
        "simulate: --vcd with --rtl": (
            ["simulate", "{prog}", "--lanes", "8", "--rtl", "verilator", "--vcd", "{tmp}/t.vcd"],
            "--vcd",
        ),
        "simulate: --config missing": (
            ["simulate", "{prog}", "--lanes", "8", "--config", "{tmp}/none.json"],
            "none.json",
        ),
        "simulate: --config broken": (
            ["simulate", "{prog}", "--lanes", "8", "--config", "{tmp}/broken.json"],
            "broken.json",
        ),
        "simulate: --config lanes x": (["simulate", "{prog}", "--config", "{tmp}/hw_lanes_x.json"], "lanes"),
        "simulate: --config unknown key": (
            ["simulate", "{prog}", "--lanes", "8", "--config", "{tmp}/hw_unknown.json"],
            "lanez",
        ),
        "simulate: --episodes 0": (["simulate", "{prog}", "--lanes", "8", "--episodes", "0"], "--episodes"),
        "simulate: --hls with --lanes": (["simulate", "{prog}", "--hls", "--lanes", "8"], "--lanes"),
        # build
        "build: unknown --backend": (["build", "{prog}", "--backend", "nope", "-o", "{tmp}/h"], "unknown --backend"),
        "build: not a build": (["build", "{tmp}/theirs", "--backend", "amaranth", "-o", "{tmp}/h"], "theirs"),
        "build: amaranth into a user's folder": (
            ["build", "{prog}", "--backend", "amaranth", "-o", "{tmp}/theirs"],
            "theirs",
        ),
        "build: amaranth onto a file": (
            ["build", "{prog}", "--backend", "amaranth", "-o", "{tmp}/mine.txt"],
            "is a file",
        ),
        "build: amaranth under a file": (
            ["build", "{prog}", "--backend", "amaranth", "-o", "{tmp}/mine.txt/h"],
            "is a file",
        ),
        "build: amaranth unwritable": (
            ["build", "{prog}", "--backend", "amaranth", "-o", "/proc/metahw/h"],
            "cannot write",
        ),
        "build: amaranth --reuse-factor": (
            ["build", "{prog}", "--backend", "amaranth", "--reuse-factor", "2", "-o", "{tmp}/h"],
            "--reuse-factor",
        ),
        "build: amaranth --strategy": (
            ["build", "{prog}", "--backend", "amaranth", "--strategy", "resource", "-o", "{tmp}/h"],
            "--strategy",
        ),
        "build: amaranth --part": (
            ["build", "{prog}", "--backend", "amaranth", "--part", "xc7a35t", "-o", "{tmp}/h"],
            "--part",
        ),
        "build: amaranth --lanes 3": (
            ["build", "{prog}", "--backend", "amaranth", "--lanes", "3", "-o", "{tmp}/h"],
            "power of two",
        ),
        "build: hls4ml --lanes": (
            ["build", "{prog}", "--backend", "hls4ml", "--lanes", "3", "-o", "{tmp}/h"],
            "--lanes",
        ),
        "build: hls4ml --dsp-lanes": (
            ["build", "{prog}", "--backend", "hls4ml", "--dsp-lanes", "4", "-o", "{tmp}/h"],
            "--dsp-lanes",
        ),
        "build: amaranth --dsp-lanes -1": (
            ["build", "{prog}", "--backend", "amaranth", "--dsp-lanes", "-1", "-o", "{tmp}/h"],
            "--dsp-lanes",
        ),
        "build: hls4ml --config": (
            ["build", "{prog}", "--backend", "hls4ml", "--config", "{tmp}/hw_unknown.json", "-o", "{tmp}/h"],
            "--config",
        ),
        "build: hls4ml into a user's folder": (["build", "{prog}", "-o", "{tmp}/theirs"], "theirs"),
        "build: hls4ml onto a file": (["build", "{prog}", "-o", "{tmp}/mine.txt"], "is a file"),
        "build: hls4ml under a file": (["build", "{prog}", "-o", "{tmp}/mine.txt/h"], "is a file"),
        "build: hls4ml --out .": (["build", "{prog}", "-o", "."], "."),
        "build: hls4ml unwritable": (["build", "{prog}", "-o", "/proc/metahw/h"], "cannot write"),
        "build: --tb-episodes -1": (["build", "{prog}", "--tb-episodes", "-1", "-o", "{tmp}/h"], "--tb-episodes"),
        "build: --hls-backend nope": (["build", "{prog}", "--hls-backend", "nope", "-o", "{tmp}/h"], "nope"),
        "build: --strategy nope": (["build", "{prog}", "--strategy", "nope", "-o", "{tmp}/h"], "nope"),
        "build: --reuse-factor 0": (["build", "{prog}", "--reuse-factor", "0", "-o", "{tmp}/h"], "--reuse-factor"),
        "build: --clock-period 0": (["build", "{prog}", "--clock-period", "0", "-o", "{tmp}/h"], "--clock-period"),
        # hls-sim
        "hls-sim: --episodes 0": (["hls-sim", "{prog}", "--episodes", "0"], "--episodes"),
        "hls-sim: --hls-backend nope": (["hls-sim", "{prog}", "--hls-backend", "nope"], "nope"),
        "hls-sim: --reuse-factor 0": (["hls-sim", "{prog}", "--reuse-factor", "0"], "--reuse-factor"),
        "hls-sim: --project a user's folder": (["hls-sim", "{prog}", "--project", "{tmp}/theirs"], "theirs"),
        "hls-sim: --project a file": (["hls-sim", "{prog}", "--project", "{tmp}/mine.txt"], "is a file"),
        "hls-sim: not a build": (["hls-sim", "{tmp}/theirs"], "theirs"),
        # report
        "report: missing build": (["report", "{tmp}/none", "--target", "ecp5-25k"], "none"),
        "report: a compile build": (["report", "{prog}", "--target", "ecp5-25k"], "not an RTL build folder"),
        "report: no --target": (["report", "{prog}"], "missing option"),
        "report: unknown --target": (["report", "{prog}", "--target", "nope"], "nope"),
        "report: unknown --pnr": (["report", "{prog}", "--target", "ecp5-25k", "--pnr", "nope"], "nope"),
        "report: --pnr-timeout 0": (["report", "{prog}", "--target", "ecp5-25k", "--pnr-timeout", "0"], "got 0"),
        # explore
        "explore: unknown --target": (["explore", "{ckpt}", "--target", "nope"], "nope"),
        "explore: --bits x": (["explore", "{ckpt}", "--target", "ecp5-25k", "--bits", "x"], "--bits"),
        "explore: --lanes 3": (["explore", "{ckpt}", "--target", "ecp5-25k", "--lanes", "3"], "--lanes"),
        "explore: --budget 0": (["explore", "{ckpt}", "--target", "ecp5-25k", "--budget", "0"], "--budget"),
        "explore: --pnr-timeout -5": (
            ["explore", "{ckpt}", "--target", "ecp5-25k", "--pnr-timeout", "-5"],
            "--pnr-timeout",
        ),
        "explore: --workers 0": (["explore", "{ckpt}", "--target", "ecp5-25k", "--workers", "0"], "--workers"),
        "explore: --objective nope": (["explore", "{ckpt}", "--target", "ecp5-25k", "--objective", "nope"], "nope"),
        "explore: --out a file": (["explore", "{ckpt}", "--target", "ecp5-25k", "-o", "{tmp}/mine.txt"], "is a file"),
        "explore: missing checkpoint": (["explore", "{tmp}/none.pt", "--target", "ecp5-25k"], "does not exist"),
        # demo
        "demo: unknown --model": (["demo", "--model", "zoo:nope", "-o", "{tmp}/d"], "no shipped checkpoint"),
        "demo: unknown --target": (["demo", "--target", "nope", "-o", "{tmp}/d"], "nope"),
        "demo: --out a file": (["demo", "-o", "{tmp}/mine.txt"], "is a file"),
        "demo: --out a user's folder": (["demo", "-o", "{tmp}/theirs"], "theirs"),
        "demo: --bits 1": (["demo", "--bits", "1", "-o", "{tmp}/d"], "--bits"),
        "demo: --lanes 3": (["demo", "--lanes", "3", "-o", "{tmp}/d"], "--lanes"),
        "demo: --sweep x": (["demo", "--sweep", "x", "-o", "{tmp}/d"], "--sweep"),
        "demo: --episodes 1": (["demo", "--episodes", "1", "-o", "{tmp}/d"], "--episodes"),
        # the top level
        "unknown command": (["nope"], "no such command"),
        "unknown option": (["eval", "{ckpt}", "--nope"], "no such option"),
    }
    return {name: Bad(tuple(argv), says) for name, (argv, says) in c.items()}


CASES = _cases()
