"""Fixed-point compiler: ONNX import, IR, passes, quantisation, lowering, golden executor."""
