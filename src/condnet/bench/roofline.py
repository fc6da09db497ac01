"""The roofline of a benchmark record: the least time the engine could take on this machine, from the
bytes of weights it must read and the multiply-adds it must do, each over what one core was measured to
sustain. The bandwidth is measured at the model's own footprint (`engine.timing.read_bandwidth_at`):
repeated calls keep its weights in whichever cache holds them (on a 32 MiB L3, a 10 MB model streams at
L3 speed, not memory's). The peak is a tuned matrix product's (PyTorch's, one thread; for int8 weights
ONNX Runtime's int8 product), not the engine's, so the fraction shows what the engine leaves on the
table."""

from __future__ import annotations

from condnet.engine.timing import interleaved_medians


def peak_gmacs(size: int = 1024, repeats: int = 7) -> float:
    """Billions of multiply-adds a second of one core in a tuned float32 matrix product (PyTorch's
    torch.mm, one thread, size x size x size; at 512 its own overheads cost a quarter)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, b = torch.rand(size, size), torch.rand(size, size)
        return size**3 / interleaved_medians({"mm": lambda: torch.mm(a, b)}, repeats, warmup=1)["mm"] / 1e9
    finally:
        torch.set_num_threads(threads)


def int8_peak_gmacs(size: int = 1024, repeats: int = 7) -> float:
    """peak_gmacs for int8 weights: ONNX Runtime's dynamically quantized matrix product (int8 weights,
    8-bit activations quantized on the fly; VNNI or AMX where the CPU has them), one thread, size x size
    x size: AMX's tiles reach several times what the engine's int8 product (VNNI's vpdpbusd, or 16-bit
    pairs without VNNI) can, so on large products this is the baseline's peak, not one the engine can
    reach."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from condnet.bench.onnx_twin import OPSET, quantized_onnx

    weight = np.random.default_rng(0).random((size, size), np.float32) - np.float32(0.5)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "peak",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [size, size])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = min(model.ir_version, 8)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(quantized_onnx(model.SerializeToString()), options)
    x = {"x": np.random.default_rng(1).random((size, size), np.float32)}
    seconds = interleaved_medians({"int8": lambda: session.run(None, x)}, repeats, warmup=1)["int8"]
    return size**3 / seconds / 1e9


def ideal_ms(weight_bytes: float, macs: float, bandwidth_gbps: float, peak: float, threads: int = 1):
    """(ms, bound): the larger of the time to read `weight_bytes` and to do `macs` multiply-adds, with
    `threads` cores each at one core's measured bandwidth and peak; bound is "memory" or "compute"."""
    memory = weight_bytes / (bandwidth_gbps * 1e9 * threads) * 1e3
    compute = macs / (peak * 1e9 * threads) * 1e3
    return (memory, "memory") if memory >= compute else (compute, "compute")
