"""`textbook export --check`: hand-built ONNX graphs with one planted problem each (no torch needed)."""

from __future__ import annotations

import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from textbook.errors import TextbookError  # noqa: E402
from textbook.export.check import check_dir, check_model, format_report  # noqa: E402


def _save(tmp_path, nodes, inputs, outputs, name="g.onnx", opset=21, initializers=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    path = tmp_path / name
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return path


def _x(name="x", shape=(1, 4), dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, list(shape) if shape is not None else None)


def test_a_clean_static_graph_passes(tmp_path):
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], [0.5] * 16)
    path = _save(tmp_path, [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Softmax", ["h"], ["y"])],
                 [_x()], [_x("y")], initializers=[w])
    report = check_model(path)
    assert report.ok and report.op_counts == {"MatMul": 1, "Softmax": 1} and report.opset == 21
    assert "NPU check: ok" in format_report([report])


def test_planted_unsupported_op(tmp_path):
    path = _save(tmp_path, [helper.make_node("Erf", ["x"], ["y"], name="planted")], [_x()], [_x("y")])
    (finding,) = check_model(path).findings
    assert (finding.kind, finding.where) == ("unsupported-op", "Erf planted")


def test_planted_control_flow(tmp_path):
    then = helper.make_graph([helper.make_node("Identity", ["x"], ["t"])], "then", [], [_x("t")])
    other = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [], [_x("e")])
    cond = _x("c", (), TensorProto.BOOL)
    node = helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other, name="branch")
    report = check_model(_save(tmp_path, [node], [_x(), cond], [_x("y")]))
    kinds = {(f.kind, f.where) for f in report.findings}
    assert ("control-flow", "If branch") in kinds
    assert report.op_counts["Neg"] == 1  # subgraphs are walked too (their Identity is flagged as well)


def test_planted_dynamic_dimension_and_int64_arithmetic(tmp_path):
    nodes = [helper.make_node("Add", ["i", "i"], ["j"], name="wide")]
    path = _save(tmp_path, nodes, [_x("i", ("batch", 4), TensorProto.INT64)], [_x("j", ("batch", 4), TensorProto.INT64)])
    kinds = {(f.kind, f.where) for f in check_model(path).findings}
    assert ("int64-arithmetic", "Add wide") in kinds
    assert ("dynamic-shape", "i") in kinds and ("dynamic-shape", "Add wide") in kinds


def test_old_opset_is_flagged(tmp_path):
    path = _save(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], [_x()], [_x("y")], opset=13)
    assert [f.kind for f in check_model(path).findings] == ["opset"]


def test_axes_inputs_are_not_int64_arithmetic(tmp_path):
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    node = helper.make_node("ReduceMax", ["x", "axes"], ["y"], keepdims=1)
    assert check_model(_save(tmp_path, [node], [_x()], [_x("y", (1, 1))], initializers=[axes])).ok


def test_bad_paths_are_clear_errors(tmp_path):
    with pytest.raises(TextbookError, match="no .onnx files"):
        check_dir(tmp_path)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(TextbookError, match="not a readable ONNX model"):
        check_dir(broken)
