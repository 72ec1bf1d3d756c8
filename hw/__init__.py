"""Hardware backends: Amaranth (Verilog) and hls4ml generators, RTL simulation and synthesis drivers."""
