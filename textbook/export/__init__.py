"""NPU-ready ONNX export of Mu checkpoints, quantization, parity checks and ONNX Runtime inference.

Nothing heavy is imported here: torch, onnx and onnxruntime are imported inside the functions that
need them (`textbook --help` must stay fast), through `textbook.export.deps.need`.
"""
