"""Write the encoder and decoder-step graphs of a Mu model as static-shape ONNX files.

torch's TorchScript exporter traces the wrappers of `graphs.py` with fixed-size example inputs (no
dynamic axes: every dimension is a constant). Tracing leaves shape arithmetic behind (`Shape`, int64
`Add`/`Div` from `chunk`, `Identity`); ONNX Runtime's *basic* graph optimisations fold it away with
the shapes known, and produce plain ONNX ops only (the extended levels would add CPU contrib ops an
NPU cannot run). Then the tied output head is pointed back at the embedding matrix.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np

from textbook.errors import TextbookError
from textbook.export.deps import need
from textbook.export.graphs import DecoderStepGraph, EncoderGraph, decoder_io, encoder_io

EXPORT_OPSET = 20  # the TorchScript exporter's newest: has a Gelu op (opset 17 spells it with Erf, which QNN lacks)
OPSET = 21  # the graphs are then converted to 21, the first opset whose QuantizeLinear takes 16-bit types (a16w8)


def _optimise_basic(src: Path, dst: Path) -> None:
    ort = need("onnxruntime")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(dst)
    options.log_severity_level = 3
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])


def tie_head(model) -> None:
    """Replace `MatMul(h, E^T)` by `Gemm(h, E, transB=1)` where E feeds a `Gather` (the tied embedding).

    The exporter constant-folds the transpose of the shared matrix into a second initializer; this
    points the head back at the one copy (mu-small: 12.6 MB less per decoder file).
    """
    onnx = need("onnx")
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    tables = {n.input[0] for n in model.graph.node if n.op_type == "Gather" and n.input[0] in inits}
    for idx, node in enumerate(list(model.graph.node)):
        if node.op_type != "MatMul" or node.input[1] not in inits:
            continue
        weight = numpy_helper.to_array(inits[node.input[1]])
        for table in tables:
            embedding = numpy_helper.to_array(inits[table])
            if weight.shape == embedding.shape[::-1] and np.array_equal(weight, embedding.T):
                gemm = onnx.helper.make_node("Gemm", [node.input[0], table], list(node.output), name=node.name or "head", transB=1)
                model.graph.node.remove(node)
                model.graph.node.insert(idx, gemm)
                break


def drop_zero_norm_bias(model) -> None:
    """Remove the all-zero bias the exporter gives a bias-free LayerNorm (Mu's norms have none),
    then every initializer no node reads any more (these, and the head's transposed copy).

    `B` is optional in ONNX's LayerNormalization; a literal zero vector would otherwise be quantized
    like a real bias (with the input's and the scale's quantization parameters) for nothing.
    """
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "LayerNormalization" and len(node.input) > 2 and node.input[2] in inits:
            if not numpy_helper.to_array(inits[node.input[2]]).any():
                del node.input[2]
    used = {i for n in model.graph.node for i in n.input}
    for name, init in inits.items():
        if name not in used:
            model.graph.initializer.remove(init)


def write_graphs(model, out_dir: Path, *, source_len: int, cache_len: int) -> dict[str, Path]:
    """Export `model` (a Mu in eval mode) to out_dir/encoder.onnx and out_dir/decoder.onnx."""
    torch = need("torch")
    onnx = need("onnx")
    converter = need("onnx.version_converter")
    cfg = model.cfg
    layers = cfg.n_decoder_layers
    enc, dec = EncoderGraph(model, source_len).eval(), DecoderStepGraph(model, cache_len).eval()
    ids = torch.full((1, source_len), cfg.pad_id, dtype=torch.int32)
    mask = torch.ones((1, source_len), dtype=torch.float32)
    cache = torch.zeros((1, cfg.n_kv_heads, cache_len, cfg.head_dim))
    with torch.no_grad():
        cross = enc(ids, mask)[:-1]  # the last output is the sentence vector, which the decoder does not take
    step_args = (torch.tensor([[cfg.bos_id]], dtype=torch.int32), torch.tensor([0], dtype=torch.int32), mask,
                 *([cache] * (2 * layers)), *cross)
    out: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="textbook-export-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notices
        for name, module, args, (inputs, outputs) in (
            ("encoder", enc, (ids, mask), encoder_io(layers)),
            ("decoder", dec, step_args, decoder_io(layers)),
        ):
            raw, opt = Path(tmp) / f"{name}.raw.onnx", Path(tmp) / f"{name}.onnx"
            try:
                torch.onnx.export(module, args, str(raw), dynamo=False, opset_version=EXPORT_OPSET,
                                  input_names=inputs, output_names=outputs, do_constant_folding=True)
            except Exception as exc:  # the tracer raises many types; the model is at fault, not the user
                raise TextbookError(f"torch could not export the {name} graph ({type(exc).__name__}: {exc})") from None
            _optimise_basic(raw, opt)
            graph = onnx.load(str(opt))
            tie_head(graph)
            drop_zero_norm_bias(graph)
            for i, node in enumerate(graph.graph.node):  # quantization selects nodes by name
                node.name = node.name or f"{node.op_type}_{i}"
            used = {n.domain for n in graph.graph.node} | {""}  # ORT lists every domain it knows; keep the used ones
            kept = [o for o in graph.opset_import if o.domain in used]
            del graph.opset_import[:]
            graph.opset_import.extend(kept)
            graph = converter.convert_version(graph, OPSET)
            onnx.checker.check_model(graph)
            final = out_dir / f"{name}.onnx"
            onnx.save(graph, str(final.with_name(f".{final.name}.tmp")))
            final.with_name(f".{final.name}.tmp").replace(final)
            out[name] = final
    return out
