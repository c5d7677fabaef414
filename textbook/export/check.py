"""`textbook export --check DIR`: what an NPU execution provider would reject in an ONNX graph.

NPUs compile a graph ahead of time into fixed buffers, so they reject what a CPU runtime tolerates:
dimensions only known at run time, control flow (`If`, `Loop`, `Scan`), ops their backend has no
kernel for, and 64-bit integer arithmetic (the NPU's integer units are 8/16/32-bit). The op list is
that of ONNX Runtime's QNN execution provider (Qualcomm), the strictest of the three Copilot+ NPUs,
from onnxruntime/core/providers/qnn/builder/op_builder_factory.cc (v1.2x).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from textbook.errors import TextbookError
from textbook.export.deps import need

MIN_OPSET = 17
CONTROL_FLOW = frozenset({"If", "Loop", "Scan", "SequenceMap"})
# Ops ONNX Runtime's QNN EP builds (op_builder_factory.cc). `Constant` is folded into an initializer
# by the runtime before partitioning, so it never reaches the NPU as an op.
QNN_OPS = frozenset(
    """Abs Add And ArgMax ArgMin Asin Atan AveragePool BatchNormalization Cast Ceil Clip Concat Constant
    Conv ConvTranspose Cos CumSum DepthToSpace DequantizeLinear Div Einsum Elu Equal Exp Expand Flatten
    Floor FusedMatMul Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalMaxPool Greater
    GreaterOrEqual GridSample HardSigmoid HardSwish InstanceNormalization Inverse LayerNormalization
    LeakyRelu Less LessOrEqual Log LogSoftmax LpNormalization LRN LSTM MatMul Max MaxPool Mean Min Mod
    Mul Neg Not Or Pad Pow PRelu QuantizeLinear RandomUniformLike Reciprocal ReduceL2 ReduceMax
    ReduceMean ReduceMin ReduceProd ReduceSum Relu Reshape Resize RMSNormalization Round ScatterElements
    ScatterND Sigmoid Sign Sin Slice Softmax SpaceToDepth Split Sqrt Squeeze STFT Sub Sum Tanh
    ThresholdedRelu Tile TopK Transpose Unsqueeze Upsample Where""".split()
)
ARITHMETIC = frozenset(
    """Add Sub Mul Div Mod Neg Abs Pow MatMul Gemm CumSum Range Max Min Sum Mean ReduceSum ReduceProd
    ReduceMax ReduceMin ReduceMean Sign Clip""".split()
)
# Ops whose later inputs are axes (int64 by the ONNX spec, constants, not arithmetic): check input 0.
_AXES_INPUT = frozenset({"CumSum", "ReduceSum", "ReduceProd", "ReduceMax", "ReduceMin", "ReduceMean"})
_INT64 = 7  # onnx.TensorProto.INT64


@dataclass(slots=True, frozen=True)
class Finding:
    """One thing an NPU EP would reject: `kind` names the rule, `where` the node or tensor."""

    kind: str  # opset | dynamic-shape | control-flow | unsupported-op | int64-arithmetic
    where: str
    detail: str


@dataclass(slots=True)
class GraphReport:
    path: Path
    opset: int
    op_counts: dict[str, int]
    inputs: list[tuple[str, str, tuple]]
    outputs: list[tuple[str, str, tuple]]
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


def _dims(type_proto) -> tuple:
    """Static dims as ints; a dynamic one as its symbolic name or '?'."""
    shape = type_proto.tensor_type.shape
    if not type_proto.tensor_type.HasField("shape"):
        return ("?rank",)
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim)


def _walk(graph):
    """Every node, including those inside subgraphs (the bodies of If/Loop/Scan)."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.g is not None and attr.HasField("g"):
                yield from _walk(attr.g)
            for sub in attr.graphs:
                yield from _walk(sub)


def check_model(path: str | Path) -> GraphReport:
    """Lint one .onnx file for NPU compatibility (weights are not loaded: the check is structural)."""
    onnx = need("onnx")
    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises several unrelated types for a damaged file
        raise TextbookError(f"{path} is not a readable ONNX model ({exc}): re-run textbook export") from None
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # inference fails on some contrib ops; fall back to what the file declares
        inferred = model
    graph = inferred.graph
    dtype_name = onnx.helper.tensor_dtype_to_np_dtype
    types = {}  # tensor name -> (elem_type, dims)
    for info in [*graph.input, *graph.output, *graph.value_info]:
        types[info.name] = (info.type.tensor_type.elem_type, _dims(info.type))
    for init in graph.initializer:
        types[init.name] = (init.data_type, tuple(init.dims))

    def describe(info):
        elem = info.type.tensor_type.elem_type
        return info.name, str(dtype_name(elem)) if elem else "?", _dims(info.type)

    report = GraphReport(
        path=path,
        opset=opset,
        op_counts={},
        inputs=[describe(i) for i in graph.input if i.name not in {t.name for t in graph.initializer}],
        outputs=[describe(o) for o in graph.output],
    )
    if opset < MIN_OPSET:
        report.findings.append(Finding("opset", "model", f"opset {opset} < {MIN_OPSET}: re-export with opset >= {MIN_OPSET}"))
    for name, _dtype, dims in [*report.inputs, *report.outputs]:
        if any(not isinstance(d, int) or d <= 0 for d in dims):
            report.findings.append(Finding("dynamic-shape", name, f"graph input/output has shape {dims}: NPUs need every dimension fixed"))
    counts: Counter[str] = Counter()
    for node in _walk(graph):
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        counts[op] += 1
        where = f"{node.op_type} {node.name or node.output[0]}"
        if node.op_type in CONTROL_FLOW:
            report.findings.append(Finding("control-flow", where, "control flow cannot be compiled to a static NPU graph"))
        elif node.op_type not in QNN_OPS or node.domain not in ("", "ai.onnx", "com.microsoft"):
            report.findings.append(Finding("unsupported-op", where, f"{op} has no kernel in the QNN execution provider"))
        elif node.domain == "com.microsoft" and node.op_type != "FusedMatMul":
            report.findings.append(Finding("unsupported-op", where, f"{op} is an ONNX Runtime CPU contrib op"))
        if node.op_type in ARITHMETIC:
            data = node.input[:1] if node.op_type in _AXES_INPUT else node.input
            wide = [t for t in dict.fromkeys([*data, *node.output]) if t and types.get(t, (0,))[0] == _INT64]
            if wide:
                report.findings.append(Finding("int64-arithmetic", where, f"int64 tensor(s) {', '.join(wide)}: use int32"))
        for out in node.output:
            dims = types.get(out, (0, ()))[1]
            if any(not isinstance(d, int) or d <= 0 for d in dims) or dims == ("?rank",):
                report.findings.append(Finding("dynamic-shape", where, f"output {out} has shape {dims} known only at run time"))
    report.op_counts = dict(sorted(counts.items()))
    return report


def check_dir(path: str | Path) -> list[GraphReport]:
    """Check one .onnx file, or every .onnx file in a directory (an export directory)."""
    path = Path(path)
    if path.is_file():
        return [check_model(path)]
    files = sorted(path.glob("*.onnx")) if path.is_dir() else []
    if not files:
        raise TextbookError(f"no .onnx files in {path}: point --check at a directory written by textbook export")
    return [check_model(f) for f in files]


def format_report(reports: list[GraphReport]) -> str:
    lines: list[str] = []
    for r in reports:
        lines.append(f"{r.path}  (opset {r.opset}, {sum(r.op_counts.values())} nodes)")
        for name, dtype, dims in r.inputs:
            lines.append(f"  in   {name}: {dtype}{list(dims)}")
        for name, dtype, dims in r.outputs:
            lines.append(f"  out  {name}: {dtype}{list(dims)}")
        lines.append("  ops: " + ", ".join(f"{op} x{n}" for op, n in r.op_counts.items()))
        if r.ok:
            lines.append("  NPU check: ok (static shapes, no control flow, every op supported, no int64 arithmetic)")
        else:
            by_kind = Counter(f.kind for f in r.findings)
            lines.append("  NPU check: " + ", ".join(f"{k} x{n}" for k, n in sorted(by_kind.items())))
            for f in r.findings[:50]:
                lines.append(f"    [{f.kind}] {f.where}: {f.detail}")
            if len(r.findings) > 50:
                lines.append(f"    ... and {len(r.findings) - 50} more")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
