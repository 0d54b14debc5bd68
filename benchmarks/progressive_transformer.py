"""Progressive resizing on a transformer (built for one size, rebuilt for each): wall time
of a 3-size schedule vs the same epochs at the final size, rebuilds and traces included.

A keras-hub ViT has one position row per patch of its build size, so `fit_transfer` runs
one `fit` per size and rebuilds the model in between (`zoo_transfer.resize_model`). This
measures whether the smaller early epochs still pay once the rebuilds (a new model, its
weights moved, new traces) are counted. Same card (`deit_tiny_distilled_patch16_224`,
random weights: speed does not depend on them; every layer trainable), same images (in
memory, stored at the final size), same epochs, same batch; the two sides alternate
`--repeat` times and the best of each is compared. The attention cost grows with the
square of the token count, so the ideal ratio is below the pixel ratio.

    python benchmarks/progressive_transformer.py [--images 256] [--epochs 4]
        [--sizes 112 160 224] [--starts 0 2 3] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from progressive import compare, epoch_timer, images  # noqa: E402

CARD = "deit_tiny_distilled_patch16_224.imagenet"


def run(progressive: bool, args) -> dict:
    import zoo_transfer
    from zoo_transfer.callbacks import ProgressiveResizing

    splits, first = images(progressive, args)
    final = args.sizes[-1]
    model = zoo_transfer.build(
        args.model, 10, weights=None, input_shape=(first, first, 3), trainable_from=0
    )
    model.compile(
        zoo_transfer.transfer_optimizer(model, "adam", learning_rate=1e-4),
        "sparse_categorical_crossentropy",
    )
    epoch_s: list[float] = []
    callbacks = [epoch_timer(epoch_s)]
    if progressive:
        callbacks.insert(0, ProgressiveResizing(args.schedule, splits.train_images, verbose=0))
    start = time.perf_counter()
    history = zoo_transfer.fit_transfer(
        model, splits.train, epochs=args.epochs, callbacks=callbacks, verbose=0, cache="never"
    )
    wall = time.perf_counter() - start
    sizes = history.history.get("image_size", [final] * args.epochs)
    return {"wall": wall, "epoch_s": epoch_s, "sizes": sizes, "rebuilt": history.model is not model}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=CARD)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--sizes", type=int, nargs=3, default=(112, 160, 224))
    parser.add_argument("--starts", type=int, nargs=3, default=(0, 2, 3))
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    args.schedule = dict(zip(args.starts, args.sizes, strict=True))
    print(
        f"{args.model} (random weights, all layers trainable), {args.images} images, "
        f"batch 32, {args.epochs} epochs: schedule {args.schedule} vs {args.sizes[-1]} px; "
        f"CPUs {os.cpu_count()}"
    )
    best, ratio, ideal = compare(run, args)
    print(
        f"ratio {ratio:.3f} (pixel ratio {ideal:.3f}); the progressive side was rebuilt "
        f"per size: {best[True]['rebuilt']}"
    )


if __name__ == "__main__":
    main()
