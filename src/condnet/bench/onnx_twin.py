"""The dense twin of a network as an ONNX graph, run by ONNX Runtime: what a user would deploy a dense
MLP with on a CPU, so the benchmark's strongest baseline (`condnet bench`, the frontier).

The graph is built from the checkpoint's arrays with onnx.helper (no PyTorch exporter): per hidden
layer Gemm (x W^T + b, transB=1) then Tanh or Relu, and a Gemm for the output; no policies. The batch
dimension is dynamic. Sessions use ONNX Runtime's fastest CPU settings for one stream of calls: all
graph optimisations, sequential execution, `threads` intra-op threads (not spinning when idle, with
more than one: see ort_session).
"""

from __future__ import annotations

import logging

import numpy as np

from condnet.checkpoint import Checkpoint

OPSET = 17


def dense_onnx(checkpoint: Checkpoint) -> bytes:
    """The serialized ONNX model of the checkpoint's dense twin: input "x" (batch, input_dim) float32,
    output "logits" (batch, n_classes)."""
    from onnx import TensorProto, checker, helper, numpy_helper

    n_hidden = len(checkpoint.model.widths)
    activation = {"tanh": "Tanh", "relu": "Relu"}[checkpoint.model.activation]
    nodes, weights, h = [], [], "x"
    for index in range(n_hidden + 1):
        name = f"hidden.{index}" if index < n_hidden else "output"
        for part in ("weight", "bias"):
            array = np.ascontiguousarray(checkpoint.tensors[f"{name}.{part}"], np.float32)
            weights.append(numpy_helper.from_array(array, f"{name}.{part}"))
        product = f"{name}.linear" if index < n_hidden else "logits"
        nodes.append(helper.make_node("Gemm", [h, f"{name}.weight", f"{name}.bias"], [product], transB=1))
        if index < n_hidden:
            h = f"{name}.out"
            nodes.append(helper.make_node(activation, [product], [h]))
    graph = helper.make_graph(
        nodes,
        "condnet_dense_twin",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", checkpoint.input_dim])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", checkpoint.n_classes])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = min(model.ir_version, 8)  # readable by every onnxruntime this package allows
    checker.check_model(model)
    return model.SerializeToString()


def int8_onnx(checkpoint: Checkpoint) -> bytes:
    """The dense twin with its weights quantized to int8 by ONNX Runtime's dynamic quantization (per
    tensor; activations quantized on the fly): the reduced-precision dense baseline."""
    return quantized_onnx(dense_onnx(checkpoint))


def quantized_onnx(graph: bytes) -> bytes:
    """A serialized float32 ONNX model with its MatMul and Gemm weights quantized to int8 by ONNX
    Runtime's dynamic quantization."""
    import tempfile
    from pathlib import Path

    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp, "fp32.onnx"), Path(tmp, "int8.onnx")
        source.write_bytes(graph)
        logging.disable(logging.WARNING)  # its advice to pre-process the graph, on the root logger
        try:
            quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
        return target.read_bytes()


def ort_session(checkpoint: Checkpoint, threads: int = 1, int8: bool = False, flush_subnormals: bool = False):
    """An ONNX Runtime session of the dense twin (int8: its dynamically quantized version); call it as
    `session.run(None, {"x": x})[0]`. flush_subnormals: ONNX Runtime's set_denormal_as_zero, on its
    threads and the calling thread's (creating a session without it turns them off on the calling
    thread)."""
    import onnxruntime as ort  # missing: the CLI names the extra to install (condnet[bench])

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    if threads > 1:
        # ORT's idle intra-op threads spin by default; timed in turn with the engine and PyTorch on the
        # same cores, the spinning took the cores from them (2 threads, 784-256-10 at batch 50: engine
        # 11.7 ms instead of ~0.2). A session that shares its cores has to turn it off.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if flush_subnormals:
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
    graph = int8_onnx(checkpoint) if int8 else dense_onnx(checkpoint)
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
