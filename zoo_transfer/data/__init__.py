"""Input pipelines: `load` a data source into batches whose image size can change between epochs.

`load(source, image_size=...)` reads a folder with one subfolder per class, a
`tfds:NAME[:SPLIT]` TensorFlow Datasets name, a numpy `(x, y)` pair or an unbatched
`tf.data.Dataset` of `(image, label)`, and returns `Splits`: batched training and
validation datasets of raw RGB 0-255 float32 images, the class names, the files it
skipped, and the `ResizableImages` behind the datasets (for `ProgressiveResizing` and
`EpochSeeding`). `read_image` reads one file exactly as training stores it.

```python
from zoo_transfer.data import load

train, val, class_names = load("flowers/", image_size=160, validation_split=0.2)
model.fit(train, validation_data=val, epochs=5)
```

One concept per module:
- `sources`: `load`, `Splits`, and the folder and numpy readers;
- `tfds`: TensorFlow Datasets names and `tf.data.Dataset` sources;
- `parts`: a source once read (`_Part`), its split, the memory check, its pipeline;
- `containers`: `ResizableImages` and the protocol `Resizable`;
- `arrays`: `ResizableArrays`, the container of the backends without TensorFlow;
- `augment`: the augmentation presets and layers, and the per-batch map;
- `image_ops`: every TensorFlow image op (decoding, RGB, resizing, uint8 rounding);
- `pil_ops`: the same ops without TensorFlow (Pillow and Keras), for the other backends.

On the TensorFlow backend the pipelines are `tf.data`; on JAX, PyTorch or numpy `load`
reads folders and numpy arrays without importing TensorFlow, into `ResizableArrays`
whose `dataset()` is a Keras `PyDataset`.

Importing this package imports neither TensorFlow nor Keras: the modules import them
inside the functions that use them.
"""

from zoo_transfer.data.arrays import ResizableArrays
from zoo_transfer.data.augment import AUGMENT_PRESETS, augmentation_layers
from zoo_transfer.data.containers import Resizable, ResizableImages
from zoo_transfer.data.image_ops import (
    _decode_file as _decode_file,  # for the tests of reduced-scale JPEG decoding
)
from zoo_transfer.data.image_ops import load_image, read_image
from zoo_transfer.data.parts import FileList
from zoo_transfer.data.sources import Splits, load

__all__ = [
    "AUGMENT_PRESETS",
    "FileList",
    "Resizable",
    "ResizableArrays",
    "ResizableImages",
    "Splits",
    "augmentation_layers",
    "load",
    "load_image",
    "read_image",
]
