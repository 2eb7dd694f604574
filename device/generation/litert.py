"""One LiteRT model as the device runs it: load, check against the card, run in int8.

The genre generator and the harmony model both go through :class:`LiteModel`, so
both refuse a file whose tensors differ from their card in the same words.

>>> model = LiteModel(Path("models/harmony.tflite"), card.inputs, card.outputs)  # doctest: +SKIP
>>> out = model.run({"cells": features[None]})                                  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepkeys.device.errors import UserError, first_line
from deepkeys.device.generation.card import TensorSpec
from deepkeys.device.quiet import captured_stderr


def interpreter_class() -> type:
    # Imported on first use: reading cards and listing genres must not load LiteRT.
    # ai-edge-litert only: tflite-runtime breaks with numpy 2 and with current models.
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter


class LiteModel:
    """An int8 model whose signature must match ``inputs`` and ``outputs`` exactly."""

    def __init__(
        self,
        path: Path,
        inputs: dict[str, TensorSpec],
        outputs: dict[str, TensorSpec],
        threads: int = 1,
    ) -> None:
        self.path, self.inputs, self.outputs = path, inputs, outputs
        try:
            # LiteRT prints "Created TensorFlow Lite XNNPACK delegate" from C when the
            # delegate is applied; allocating here applies it inside the capture.
            with captured_stderr(keep=lambda line: "XNNPACK delegate" not in line):
                interpreter = interpreter_class()(model_path=str(path), num_threads=threads)
                interpreter.allocate_tensors()
                self._runner = interpreter.get_signature_runner()
        except (ValueError, RuntimeError) as exc:
            raise UserError(f"{path}: not a loadable LiteRT model ({first_line(exc)})") from None
        self._interpreter = interpreter  # the runner needs it alive
        self._check(self._runner.get_input_details(), inputs, "input")
        self._check(self._runner.get_output_details(), outputs, "output")

    def _check(self, details: dict, expected: dict[str, TensorSpec], what: str) -> None:
        if set(details) != set(expected):
            raise UserError(
                f"{self.path}: {what}s {sorted(details)} do not match its card ({sorted(expected)})"
            )
        for name, spec in expected.items():
            d = details[name]
            scale, zero = d["quantization"]
            if tuple(d["shape"]) != spec.shape or d["dtype"] != np.int8:
                raise UserError(
                    f"{self.path}: {what} {name!r} is {d['dtype'].__name__}"
                    f"{list(d['shape'])}, its card says int8{list(spec.shape)}"
                )
            if not np.isclose(scale, spec.scale, rtol=1e-5) or zero != spec.zero_point:
                raise UserError(
                    f"{self.path}: {what} {name!r} quantization does not match its card"
                )

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Float inputs (reshaped to the card's shapes) -> dequantized float outputs."""
        quantized = {
            k: quantize(v.reshape(self.inputs[k].shape), self.inputs[k]) for k, v in feeds.items()
        }
        out = self._runner(**quantized)
        return {k: dequantize(v, self.outputs[k]) for k, v in out.items()}


def quantize(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    q = np.round(x / spec.scale) + spec.zero_point
    return np.clip(q, -128, 127).astype(np.int8)


def dequantize(q: np.ndarray, spec: TensorSpec) -> np.ndarray:
    return (q.astype(np.float32) - spec.zero_point) * spec.scale
