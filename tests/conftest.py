"""Shared fixtures: the real-data folder, the registry sweep selection, Keras helpers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Under xdist each worker gets its share of the cores: TensorFlow's thread pools (and the
# processes the tests start, which inherit this) stay within it instead of every worker
# spinning threads on every core. Measured on 13 sweep cards: 65 s -> 52 s.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
if _WORKERS > 1:
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    _share = str(max(1, (_cores or 1) // _WORKERS))
    for _name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(_name, _share)
# `zoo-transfer rank` stores backbone features for `train` (zoo_transfer.feature_cache):
# the tests' go to a folder of their own, never to the user's ~/.cache.
if "ZOO_TRANSFER_CACHE_DIR" not in os.environ:
    import tempfile

    os.environ["ZOO_TRANSFER_CACHE_DIR"] = tempfile.mkdtemp(prefix="zoo-transfer-test-cache-")

ROOT = Path(__file__).resolve().parents[1]

# One small card per family, plus the variants the fast run must cover. The full
# sweep (`pytest --sweep=full`, what `.ci/run` runs) covers every card.
FAST_SWEEP = (
    "resnet50",
    "resnet50_v2",
    "vgg16",
    "xception",
    "inception_v3",
    "inception_resnet_v2",
    "densenet121",
    "nasnet_mobile",
    "mobilenet.a025_224",
    "mobilenet_v2.a035_96",
    "mobilenet_v3_small.a100",
    "mobilenet_v3_large.minimalistic",
    "efficientnet_b0",
    "efficientnet_v2_b0",
    "efficientnet_v2_s",
    "convnext_tiny",
)


# tests/jax is the JAX job: `tests/test_jax_job.py` runs it in a process of its own
# (KERAS_BACKEND=jax, TensorFlow unimportable); this process never collects it.
collect_ignore = [] if os.environ.get("ZOO_TRANSFER_JAX_JOB") == "1" else ["jax"]


def pytest_addoption(parser):
    parser.addoption(
        "--sweep",
        choices=("fast", "full"),
        default=os.environ.get("ZOO_TRANSFER_SWEEP", "fast"),
        help="registry verification over a fast subset (default) or every card (full)",
    )


def pytest_xdist_auto_num_workers(config):
    """`-n auto` (the default, see pyproject.toml): one worker per core, at most one per 6 GiB.

    A worker peaks near 4 GiB while it builds the largest cards' models.
    """
    from zoo_transfer.memory import available_memory

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = available_memory()
    by_memory = max(1, memory // (6 << 30)) if memory else 1
    return max(1, min(cores or 1, by_memory))


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups into the node ids
def pytest_collection_modifyitems(config, items):
    """Keep what shares work on one xdist worker (`--dist loadgroup`).

    A module's tests stay together, so its module-scoped fixtures (a trained run, a
    built model) are made once. Sweep cards are grouped by their smallest-input build,
    which cards differing only in input size share (`registry/card_sweep.py`).
    """
    from zoo_transfer.registry import get_card

    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        params = getattr(item, "callspec", None)
        card_name = params.params.get("card_name") if params else None
        if card_name is not None:
            card = get_card(card_name)
            group = f"card:{card.constructor}:{sorted(card.kwargs.items())}"
        else:
            group = item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))
    # The longest tests first, so that no worker starts one while the other is finishing:
    # xdist hands out the groups in this order.
    items.sort(key=lambda item: item.get_closest_marker("early") is None)


# The keras-hub cards' fast subset: one per family (the smallest).
FAST_HUB_SWEEP = (
    "dinov2_small",
    "vit_base_patch16_224",
    "deit_tiny",
    "clip_vit_base_patch32",
    "siglip_base_patch16_224",
    "hub_resnet18",
    "hub_efficientnet_b0",
    "hub_mobilenet_v3_small_100",
)


def pytest_runtest_logreport(report):
    """With `ZOO_TRANSFER_TEST_TIMES=FILE`, append each phase's time as it ends:
    `nodeid<TAB>phase<TAB>seconds<TAB>outcome`, so a run cut short still says where its
    time went (`--durations` prints only at the end)."""
    path = os.environ.get("ZOO_TRANSFER_TEST_TIMES")
    if path and not os.environ.get("PYTEST_XDIST_WORKER"):  # the controller writes
        with open(path, "a") as f:
            f.write(f"{report.nodeid}\t{report.when}\t{report.duration:.2f}\t{report.outcome}\n")


def pytest_collection_finish(session):
    """Move everything imported so far out of the garbage collector's reach.

    Keras' `clear_session` (the `fresh_keras` fixture, twice a test) runs `gc.collect()`,
    which walks every object: with TensorFlow, Keras and keras-hub imported that is half a
    million, about 0.6 s a call, and more as a worker goes on. Frozen objects are the
    modules' own, which live as long as the process anyway.
    """
    import gc

    gc.collect()
    gc.freeze()


def pytest_generate_tests(metafunc):
    from zoo_transfer.registry import REGISTRY

    full = metafunc.config.getoption("--sweep") == "full"
    if "card_name" in metafunc.fixturenames:  # keras.applications (and the package's own)
        if full:
            names = [n for n in REGISTRY.names() if REGISTRY.get(n).zoo == "applications"]
        else:
            names = [REGISTRY.resolve(n) for n in FAST_SWEEP]
        metafunc.parametrize("card_name", names)
    if "hub_card_name" in metafunc.fixturenames:  # keras-hub presets
        if full:
            names = [n for n in REGISTRY.names() if REGISTRY.get(n).zoo == "hub"]
        else:
            names = [REGISTRY.resolve(n) for n in FAST_HUB_SWEEP]
        metafunc.parametrize("hub_card_name", names)


def shared_data_dir() -> Path | None:
    """`$ZOO_TRANSFER_TEST_DATA`, else `../shared/data` beside the repository."""
    env = os.environ.get("ZOO_TRANSFER_TEST_DATA")
    path = Path(env) if env else ROOT.parent / "shared" / "data"
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip(
            "real test data not found: set ZOO_TRANSFER_TEST_DATA or place shared/data "
            "beside the repository (.ci/run refuses to run without it)"
        )
    return path


def shift_auto_names() -> None:
    """Bump Keras' auto-naming counters, as building other models first would.

    A card that stored an auto-generated name (`activation_17`) would then fail to
    resolve in the model built next: the test proves names survive any prior builds.
    Every layer class's counter moves by one through `keras.backend.get_uid`, the
    counter Keras' auto names read (building one of each, as before, cost seconds).
    """
    import keras

    for cls in _layer_classes():
        keras.backend.get_uid(_snake_case(cls.__name__))


def _layer_classes() -> list[type]:
    import keras

    return [
        cls
        for cls in vars(keras.layers).values()
        if isinstance(cls, type) and issubclass(cls, keras.layers.Layer)
    ]


def _snake_case(name: str) -> str:
    """Keras' auto-name prefix for a class name: `Conv2DTranspose` -> `conv2d_transpose`."""
    import re

    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", re.sub(r"\W+", "", name))
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


_COLLECTED_AT = [3 << 30]  # resident bytes after which the next full collection runs


def _collect_if_large(step: int = 1 << 30) -> None:
    """`gc.collect()` only when this process has grown a GiB since the last collection
    (the first past 3 GiB).

    Keras' `clear_session` collects on every call, which walks every object a worker
    holds (2 s each, late in a run); the automatic collector frees cycles anyway, and a
    full collection is only worth its time when memory is actually growing. Resident
    memory rarely shrinks after a collection (the allocator keeps its pages), so a fixed
    limit, once passed, made every later test pay: 130 s of one full run.
    """
    import gc

    try:
        with open("/proc/self/statm") as f:
            resident = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return
    if resident > _COLLECTED_AT[0]:
        gc.collect()
        _COLLECTED_AT[0] = resident + step


@pytest.fixture
def fresh_keras():
    """A cleared Keras session whose auto-name counters are no longer at zero."""
    import keras

    keras.backend.clear_session(free_memory=False)
    shift_auto_names()
    yield keras
    keras.backend.clear_session(free_memory=False)
    _collect_if_large()


@pytest.fixture
def small_data():
    """16 raw 32x32 RGB images and 3-class labels."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 3, 16)
    return x, y


@pytest.fixture
def small_model(fresh_keras):
    """A small transfer model (MobileNetV3Small, random weights, 32 px, frozen backbone)."""
    import zoo_transfer

    fresh_keras.utils.set_random_seed(0)
    return zoo_transfer.build("mobilenet_v3_small", 3, weights=None, input_shape=(32, 32, 3))


TWO_CPUS = """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
import keras, zoo_transfer
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert strategy.num_replicas_in_sync == 2
"""


@pytest.fixture(name="run_on_two_cpus")
def run_on_two_cpus_fixture():
    return run_on_two_cpus


def run_on_two_cpus(body: str) -> str:
    """Run `body` in a fresh process with `strategy`, a MirroredStrategy over 2 logical CPUs.

    Logical devices must be set before TensorFlow starts, hence the subprocess. Returns
    stdout; fails the test with the end of stderr when the script fails.
    """
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", TWO_CPUS + body], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="session")
def make_folder():
    """`make_folder(root, per_class, seed=0, classes=5)` writes a digits folder."""
    from digit_folders import write_folder

    return write_folder


# ------------------------------------------------------------------ inference: a colour
# classifier with known answers and PNG writers (predict, evaluate, model_file tests)
COLOR_SIZE = 32


def color_model(class_names=("red", "blue"), activation: str | None = "softmax"):
    """A 2-class model that says "red" when mean red > mean blue, with known weights.

    Raw 0-255 input at 32x32; logits are 0.05 * (mean red - mean blue) and its negative.
    `class_names` only fixes which output is red: the first name is output 0.
    """
    import keras

    inputs = keras.Input((COLOR_SIZE, COLOR_SIZE, 3), name="image")
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    dense = keras.layers.Dense(2, name="logits")
    x = dense(x)
    if activation:
        x = keras.layers.Activation(activation)(x)
    kernel = np.array([[1.0, -1.0], [0.0, 0.0], [-1.0, 1.0]], "float32") * 0.05
    if class_names[0] != "red":
        kernel = kernel[:, ::-1]
    dense.set_weights([kernel, np.zeros(2, "float32")])
    return keras.Model(inputs, x)


def write_png(path: Path, rgb, size=(40, 48), mode: str = "RGB") -> Path:
    """A solid-colour PNG (`mode` RGB, L or RGBA) of `size` (width, height)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, rgb).save(path)
    return path


@pytest.fixture(name="color_model")
def color_model_fixture():
    return color_model


@pytest.fixture(name="write_png")
def write_png_fixture():
    return write_png


@pytest.fixture
def color_folder(tmp_path):
    """red/ holds 3 red images and 1 blue one (mislabelled); blue/ holds 2 blue images."""
    root = tmp_path / "val"
    for i in range(3):
        write_png(root / "red" / f"r{i}.png", (200 + 10 * i, 20, 30))
    write_png(root / "red" / "r9_blue.png", (10, 20, 220))
    write_png(root / "blue" / "b0.png", (0, 0, 255))
    write_png(root / "blue" / "b1.jpg", (40, 60, 180))
    (root / "blue" / "notes.txt").write_text("not an image")
    return root


HUB_FAMILIES = ("dinov2", "vit", "deit", "clip", "siglip", "mobilenet", "efficientnet", "resnet")


@pytest.fixture(scope="session")
def hub_presets(tmp_path_factory):
    """Tiny keras-hub presets of each family, saved as preset folders (`save_to_preset`):
    `{family: folder}` with config.json, model.weights.h5 and image_converter.json.

    Random weights, small configs: they stand in for the real presets, which cannot be
    downloaded here, with the real keras-hub classes and file layout. Made once per
    run: under xdist the first worker writes them and the others read them.
    """
    import fcntl

    pytest.importorskip("keras_hub", reason="keras-hub (the hub extra) is missing")
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "hub-presets"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (root / "done").exists():
            _save_hub_presets(root)
            (root / "done").write_text("ok\n")
    return {family: root / f"tiny_{family}" for family in HUB_FAMILIES}


def _save_hub_presets(root: Path) -> None:
    import keras
    import keras_hub

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    imagenet = {
        "scale": [1 / 255 / s for s in std],
        "offset": [-m / s for m, s in zip(mean, std, strict=True)],
    }
    half = {"scale": 1 / 127.5, "offset": -1.0}
    cmean, cstd = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    clip = {
        "scale": [1 / 255 / s for s in cstd],
        "offset": [-m / s for m, s in zip(cmean, cstd, strict=True)],
    }

    def timm_config(family, architecture):  # keras-hub's own config for a timm model
        import importlib

        module = importlib.import_module(f"keras_hub.src.utils.timm.convert_{family}")
        return module.convert_backbone_config({"architecture": architecture})

    models, layers = keras_hub.models, keras_hub.layers
    families = {
        "dinov2": (
            models.DINOV2Backbone(
                patch_size=14, num_layers=3, hidden_dim=32, num_heads=2, intermediate_dim=64,
                image_shape=(42, 42, 3), position_embedding_shape=(42, 42),
            ),
            layers.DINOV2ImageConverter(image_size=(42, 42), interpolation="bicubic", **imagenet),
        ),
        "vit": (
            models.ViTBackbone(
                image_shape=(32, 32, 3), patch_size=16, num_layers=2, num_heads=2,
                hidden_dim=32, mlp_dim=64,
            ),
            layers.ViTImageConverter(image_size=(32, 32), **half),
        ),
        "deit": (
            models.DeiTBackbone(
                image_shape=(32, 32, 3), patch_size=16, num_layers=2, num_heads=2,
                hidden_dim=32, intermediate_dim=64,
            ),
            layers.DeiTImageConverter(image_size=(32, 32), interpolation="bicubic", **imagenet),
        ),
        "clip": (
            models.CLIPBackbone(
                models.CLIPVisionEncoder(
                    patch_size=16, hidden_dim=32, num_layers=2, num_heads=2,
                    intermediate_dim=64, image_shape=(32, 32, 3),
                ),
                models.CLIPTextEncoder(
                    vocabulary_size=50, embedding_dim=32, hidden_dim=32, num_layers=1,
                    num_heads=2, intermediate_dim=64, max_sequence_length=8,
                ),
                projection_dim=16,
            ),
            layers.CLIPImageConverter(image_size=(32, 32), interpolation="bicubic", **clip),
        ),
        "siglip": (  # no class token: 4 patch tokens, pooled by an attention head
            models.SigLIPBackbone(
                models.SigLIPVisionEncoder(
                    patch_size=16, hidden_dim=32, num_layers=2, num_heads=2,
                    intermediate_dim=64, image_shape=(32, 32, 3),
                ),
                models.SigLIPTextEncoder(
                    vocabulary_size=50, embedding_dim=32, hidden_dim=32, num_layers=1,
                    num_heads=2, intermediate_dim=64, max_sequence_length=8,
                ),
            ),
            layers.SigLIPImageConverter(image_size=(32, 32), interpolation="bicubic", **half),
        ),
        "mobilenet": (
            models.MobileNetBackbone(
                **timm_config("mobilenet", "mobilenetv3_small_050"), image_shape=(32, 32, 3)
            ),
            layers.MobileNetImageConverter(image_size=(32, 32), **imagenet),
        ),
        "efficientnet": (
            models.EfficientNetBackbone(
                **timm_config("efficientnet", "efficientnet_b0"), input_shape=(32, 32, 3)
            ),
            layers.EfficientNetImageConverter(image_size=(32, 32), **imagenet),
        ),
        "resnet": (
            models.ResNetBackbone(
                input_conv_filters=[64], input_conv_kernel_sizes=[7],
                stackwise_num_filters=[64, 64, 64, 64], stackwise_num_blocks=[1, 1, 1, 1],
                stackwise_num_strides=[1, 2, 2, 2], block_type="basic_block",
            ),
            layers.ResNetImageConverter(image_size=(64, 64), **imagenet),
        ),
    }  # fmt: skip
    assert set(families) == set(HUB_FAMILIES)
    for family, (backbone, converter) in families.items():
        rng = np.random.default_rng(len(family))
        for v in backbone.weights:  # away from the initialisers' zeros and ones
            v.assign(v.numpy() + rng.normal(0, 0.02, v.shape).astype(v.dtype))
        folder = root / f"tiny_{family}"
        backbone.save_to_preset(str(folder))
        converter.save_to_preset(str(folder))
    keras.backend.clear_session()
