"""Small ONNX files that are not segmentation networks (for the hostile-input tests)."""

from __future__ import annotations


def not_a_segmenter(path, kind: str) -> None:
    """Small ONNX files that are not segmentation networks: a classifier, two inputs, a grey input,
    and one whose output rank is only known when it runs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = []
    x = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])]
    if kind == "classifier":  # [1,3,32,32] -> [1,3]
        nodes = [helper.make_node("GlobalAveragePool", ["input"], ["p"]), helper.make_node("Flatten", ["p"], ["out"])]
        y = [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3])]
    elif kind == "classifier_undeclared":  # same, but the output's shape is not declared
        nodes = [helper.make_node("GlobalAveragePool", ["input"], ["p"]), helper.make_node("Flatten", ["p"], ["out"])]
        y = [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)]
    elif kind == "two_inputs":
        x.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [1, 3, 32, 32]))
        nodes = [helper.make_node("Add", ["input", "extra"], ["out"])]
        y = [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 32, 32])]
    elif kind == "grey_input":
        x = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 32, 32])]
        nodes = [helper.make_node("Identity", ["input"], ["out"])]
        y = [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1, 32, 32])]
    else:
        raise AssertionError(kind)
    graph = helper.make_graph(nodes, kind, x, y, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
