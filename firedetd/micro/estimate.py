"""An ESTIMATE of firedetd-micro's invoke time on boards we do not have, from the .tflite's own multiply-accumulates
per operator kind and published per-kernel cycle counts. Not a measurement: docs/micro.md says how to measure.

Cycles per MAC, ESP32-S3 at 240 MHz with ESP-NN (espressif/esp-nn README, "Kernelwise performance for s8
versions", optimized ticks over the MACs of each listed case, tensors in external PSRAM):
- 1x1 convolution, 10x10 input, 64 -> 64 channels: 461,398 ticks / 409,600 MACs = 1.13
- 3x3 convolution with 3 input channels (our stem), 10x10 input: 643,689 / 110,592 = 5.82
- 3x3 depthwise, 18x18 input, 16 channels: 191,931 / 36,864 = 5.21
A cross-check from a whole model: esp-tflite-micro's README gives 54 ms on the ESP32-S3 with ESP-NN for the
person-detection model (MobileNetV1 0.25, 96x96, ~7.5 M MACs by its layer shapes): 1.7 cycles per MAC overall.

Cortex-M7 (STM32H7 at 480 MHz, TFLM with CMSIS-NN): no per-kernel table was at hand; a published whole-model
figure of ~18 ms for MobileNetV1 0.25 at 96x96 (about 1.15 cycles per MAC) is applied to all MACs. Rougher still.
"""

import numpy as np

ESP32S3_HZ = 240e6
CORTEX_M7_HZ = 480e6
ESP32S3_CYCLES_PER_MAC = {"pointwise": 1.13, "conv": 5.82, "depthwise": 5.21, "fully_connected": 1.13}
CORTEX_M7_CYCLES_PER_MAC = 1.15
ESP32S3_PERSON_DETECTION = {"ms": 54.0, "macs": 7.5e6}


def macs_by_kind(model_bytes):
    """Multiply-accumulates of each heavy operator in the flatbuffer, grouped by kernel kind."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    graph = model.subgraphs[0]
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    totals = {}
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = names[max(code.builtinCode, code.deprecatedBuiltinCode)]
        weights = [int(v) for v in graph.tensors[op.inputs[1]].shape] if len(op.inputs) > 1 else []
        out = [int(v) for v in graph.tensors[op.outputs[0]].shape]
        if name == "CONV_2D":
            kind = "pointwise" if weights[1] == weights[2] == 1 else "conv"
            macs = int(np.prod(out)) * weights[1] * weights[2] * weights[3]
        elif name == "DEPTHWISE_CONV_2D":
            kind, macs = "depthwise", int(np.prod(out)) * weights[1] * weights[2]
        elif name == "FULLY_CONNECTED":
            kind, macs = "fully_connected", int(np.prod(weights))
        else:
            continue
        totals[kind] = totals.get(kind, 0) + macs
    return totals


def estimate_latency_ms(model_bytes):
    """{"macs": ..., "esp32s3_esp_nn_ms": ..., "esp32s3_scaled_from_person_detection_ms": ..., "cortex_m7_ms": ...}"""
    macs = macs_by_kind(model_bytes)
    total = sum(macs.values())
    esp_cycles = sum(n * ESP32S3_CYCLES_PER_MAC[kind] for kind, n in macs.items())
    person = ESP32S3_PERSON_DETECTION
    return {"macs": total, "macs_by_kind": macs,
            "esp32s3_esp_nn_ms": round(esp_cycles / ESP32S3_HZ * 1000.0, 1),
            "esp32s3_scaled_from_person_detection_ms": round(person["ms"] * total / person["macs"], 1),
            "cortex_m7_480mhz_cmsis_nn_ms": round(total * CORTEX_M7_CYCLES_PER_MAC / CORTEX_M7_HZ * 1000.0, 1),
            "note": "estimate from published per-kernel figures, not measured on a board (firedetd/micro/estimate.py)"}
