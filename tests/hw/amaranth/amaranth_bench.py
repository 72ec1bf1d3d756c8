"""Drive a whole episode through the Accelerator in Amaranth's own simulator (small programs only)."""

from __future__ import annotations

import numpy as np
from amaranth.sim import Simulator

from metahw.hw.amaranth.spec import RtlPlan
from metahw.hw.amaranth.top import Accelerator
from metahw.hw.amaranth.verilator import RtlRun, stream_beats, unpack_outputs


def _elements(ctx, store) -> list[int]:
    """A head memory's elements in linear order (raw bits), read from its register or its one or two memories."""
    banks = [[ctx.get(mem.data[i]) for i in range(mem.depth)] for mem in store.memories]
    if store.word is not None:
        words = [ctx.get(store.word)]
    elif len(banks) == 1:
        words = banks[0]
    else:
        words = [banks[k % 2][k // 2] for k in range(len(banks[0]) + len(banks[1]))]
    mask = (1 << store.bits) - 1
    return [(words[n // store.lanes] >> (n % store.lanes * store.bits)) & mask for n in range(store.size)]


def amaranth_episode(
    rp: RtlPlan, inputs: dict[str, np.ndarray], peek: tuple[str, ...] = (), stop: int | None = None
) -> tuple[RtlRun, dict]:
    """One episode: start, always-valid source, always-ready sink; returns the run and peeked head memories."""
    top = Accelerator(rp)
    beats = stream_beats(rp, inputs)
    result: dict = {}

    async def bench(ctx) -> None:
        ctx.set(top.start, 1)
        ctx.set(top.out_ready, 1)
        issues, outs, cycle, sent = [], [], 0, 0
        while True:
            ctx.set(top.in_valid, int(sent < len(beats)))
            if sent < len(beats):
                ctx.set(top.in_data, beats[sent])
            if ctx.get(top.issue):
                issues.append((ctx.get(top.pc), cycle))
            if ctx.get(top.out_valid):
                outs.append(ctx.get(top.out_data))
            if ctx.get(top.in_ready) and sent < len(beats):
                sent += 1
            if ctx.get(top.done) or ctx.get(top.error) or cycle == stop:
                status = "done" if ctx.get(top.done) else "error" if ctx.get(top.error) else "stopped"
                outputs = unpack_outputs(rp, outs) if status == "done" else {}
                result["run"] = RtlRun(outputs, issues, cycle + 1, 0, status, ctx.get(top.error_code))
                break
            await ctx.tick()
            ctx.set(top.start, 0)
            cycle += 1
        for name in peek:
            if name.startswith("amem"):
                mem = top.amem[int(name[-1])]
                result[name] = [ctx.get(mem.data[i]) for i in range(mem.depth)]
            else:
                result[name] = _elements(ctx, top.stores[name])

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return result.pop("run"), result
