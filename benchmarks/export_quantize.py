"""What LiteRT post-training quantization costs in accuracy and buys in size.

The shared real MobileNet 0.25 ImageNet weights at 128 px with the default head (three
stages, avg+max), fitted as the converged linear probe on `fashion-mnist-small/train`;
exported with `zoo_transfer.export` as float32, dynamic-range (int8 weights) and float16
`.tflite` files, and each file scored by the LiteRT interpreter on the 500 images of
`fashion-mnist-small/val`, beside the Keras model's own accuracy.

    python benchmarks/export_quantize.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _tasks import shared_data  # noqa: E402

SIDE = 128


def main() -> None:
    import zoo_transfer
    from zoo_transfer.data import load
    from zoo_transfer.exports import export, keras_outputs, run_exported
    from zoo_transfer.linear_head import fit_linear_head

    data = shared_data() / "fashion-mnist-small"
    splits = load(str(data / "train"), image_size=SIDE, validation=str(data / "val"),
                  augment="none", batch_size=64, seed=0)  # fmt: skip
    model = zoo_transfer.build(
        "mobilenet.a025_224", len(splits.class_names), input_shape=(SIDE, SIDE, 3),
        weights=str(shared_data() / "imagenet" / "mobilenet_v1_0.25_224.weights.h5"),
        head_stages=3, pooling="avgmax",
    )  # fmt: skip
    fit_linear_head(model, splits)
    xs, ys = [], []
    for x, y in splits.val_images.in_order().dataset():
        xs.append(np.asarray(x))
        ys.append(np.asarray(y))
    x, y = np.concatenate(xs).astype("float32"), np.concatenate(ys)
    keras_acc = float(np.mean(keras_outputs(model, x).argmax(1) == y))
    print(f"{len(y)} validation images, {SIDE} px; Keras model accuracy {keras_acc:.4f}")
    print(f"{'litert':10} {'size MiB':>9} {'accuracy':>9} {'change':>8} {'agree':>7} {'s':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        base = None
        for mode in (None, "dynamic", "float16"):
            out = Path(tmp) / (mode or "float32")
            begin = time.perf_counter()
            result = export(model, out, "litert", quantize=mode,
                            class_names=splits.class_names, check_images=x[:32])  # fmt: skip
            probs = np.concatenate(
                [run_exported(out, x[i : i + 100]) for i in range(0, len(x), 100)]
            )
            seconds = time.perf_counter() - begin
            acc = float(np.mean(probs.argmax(1) == y))
            agree = float(np.mean(probs.argmax(1) == keras_outputs(model, x).argmax(1)))
            base = base or result.size_bytes
            print(f"{mode or 'float32':10} {result.size_bytes / 2**20:9.2f} {acc:9.4f} "
                  f"{acc - keras_acc:+8.4f} {agree:7.3f} {seconds:6.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
