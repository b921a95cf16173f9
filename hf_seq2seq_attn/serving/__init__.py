"""Serving on CPUs: ONNX Runtime export (fp32/int8) and the onnxruntime-backed `generate()` ([onnx] extra).
Builds on `core` and `tools`."""
