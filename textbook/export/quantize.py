"""Post-training quantization of the exported graphs with `onnxruntime.quantization`.

- `a16w8`: static QDQ, 16-bit activations and 8-bit weights, built by ONNX Runtime's QNN helper
  `get_qnn_qdq_config` (what Qualcomm's QNN execution provider runs; Mu shipped 8/16-bit on NPUs).
- `int8`: static QDQ on the weight products: uint8 activations into int8 symmetric per-channel
  weights; ONNX Runtime's CPU provider fuses each into an integer kernel (QLinearMatMul).
- `dynamic`: int8 weights, activations quantized on the fly (`MatMulInteger`): a CPU fallback that
  needs no calibration; NPUs reject it (`textbook export --check` says so).

Static variants calibrate activation ranges (MinMax) on real inputs: the encoder on padded settings
queries, the decoder on every step of the fp32 model's own greedy decoding of them (the caches it
will see). graphs.py keeps the attention scores bounded, so no activation range is infinite.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path

from textbook.errors import TextbookError
from textbook.export.deps import need

VARIANTS = ("int8", "a16w8", "dynamic")
STATIC = ("int8", "a16w8")


def calibration_feeds(runner, sources: list[list[int]], max_decoder_feeds: int) -> dict[str, list[dict]]:
    """Graph inputs seen while the fp32 runner decodes `sources`: {"encoder": [...], "decoder": [...]}."""
    feeds: dict[str, list[dict]] = {"encoder": [], "decoder": []}

    def trace(name: str, feed: dict) -> None:
        feeds[name].append({k: v.copy() for k, v in feed.items()})

    for ids in sources:
        runner.run(ids, trace=trace)
    steps = feeds["decoder"]
    if len(steps) > max_decoder_feeds:  # evenly spaced: early and late positions both represented
        stride = len(steps) / max_decoder_feeds
        feeds["decoder"] = [steps[int(i * stride)] for i in range(max_decoder_feeds)]
    return feeds


def _reader(feeds: list[dict]):
    quant = need("onnxruntime.quantization")

    class FeedReader(quant.CalibrationDataReader):
        def __init__(self):
            self._it = iter(feeds)

        def get_next(self):
            return next(self._it, None)

        def rewind(self):
            self._it = iter(feeds)

    return FeedReader()


def _gather_tables(path: Path) -> list[str]:
    onnx = need("onnx")
    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    return sorted({n.input[0] for n in model.graph.node if n.op_type == "Gather" and n.input[0] in inits})


def _weight_nodes(path: Path) -> list[str]:
    """Names of the MatMul/Gemm nodes that multiply by a weight, and of the Gathers that read a table."""
    onnx = need("onnx")
    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node
            if (n.op_type in ("MatMul", "Gemm") and n.input[1] in inits) or (n.op_type == "Gather" and n.input[0] in inits)]


@contextlib.contextmanager
def _quiet_root_logger():
    """onnxruntime.quantization advises on the root logger ("consider pre-processing"): our graphs
    are already shape-inferred and optimised (emit.py), so the advice is noise on the user's console."""
    level = logging.root.level
    logging.root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logging.root.setLevel(level)


def quantize_graph(variant: str, src: Path, dst: Path, feeds: list[dict] | None) -> None:
    """Write the `variant` quantization of the fp32 graph `src` to `dst` (atomically)."""
    with _quiet_root_logger():
        _quantize(variant, src, dst, feeds)


def _quantize(variant: str, src: Path, dst: Path, feeds: list[dict] | None) -> None:
    quant = need("onnxruntime.quantization")
    if variant not in VARIANTS:
        raise TextbookError(f"unknown quantization {variant!r}: use one of none, {', '.join(VARIANTS)}")
    if variant in STATIC and not feeds:
        raise TextbookError(f"--quantize {variant} calibrates on real inputs: pass --calibration SHARDS (settings shards)")
    tmp = dst.with_name(f".{dst.name}.tmp")
    QuantType = quant.QuantType
    if variant == "a16w8":
        from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config, qnn_preprocess_model

        with tempfile.TemporaryDirectory(prefix="textbook-qnn-") as work:
            pre = Path(work) / "pre.onnx"
            model_in = pre if qnn_preprocess_model(str(src), str(pre)) else src
            # The embedding is a weight to Gemm and a table to Gather; left alone, the helper gives it
            # the Gather output's 16-bit type. 8-bit like every weight (a converting Q/DQ follows the Gather).
            tables = {name: [{"quant_type": QuantType.QUInt8}] for name in _gather_tables(model_in)}
            config = get_qnn_qdq_config(
                str(model_in), _reader(feeds), activation_type=QuantType.QUInt16, weight_type=QuantType.QUInt8,
                init_overrides=tables,
            )
            quant.quantize(str(model_in), str(tmp), config)
    elif variant == "int8":
        # Only the weight products (and the embedding lookup) are quantized: they carry the model's
        # bytes, and a one-token decoder step is bound by reading them. Quantizing every activation
        # as well (Q/DQ around each Add, Mul and Softmax) ran 1.6x faster than fp32 on this CPU instead
        # of 2.2x (mu-small, same run). Per-channel weights, except the embedding: a Gather's output
        # reuses its table's quantization parameters, and a per-row scale cannot describe it.
        tables = _gather_tables(src)
        quant.quantize_static(
            str(src), str(tmp), _reader(feeds),
            quant_format=quant.QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            per_channel=True, calibrate_method=quant.CalibrationMethod.MinMax,
            nodes_to_quantize=_weight_nodes(src),
            extra_options={"WeightSymmetric": True,
                           "TensorQuantOverrides": {t: [{"quant_type": QuantType.QInt8, "symmetric": True}] for t in tables}},
        )
    else:
        quant.quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
    tmp.replace(dst)
