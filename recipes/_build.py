"""`build` and `feature_extractor`: a card becomes a ready-to-train Keras model.

The model takes raw RGB pixels (0-255). The card's normalisation runs inside it (a
frozen core `Dense` on the channel axis, so `.keras` files load anywhere without this
package), then the backbone (a nested model named after the card, cut at a stage,
frozen, its BatchNorm layers in inference mode), then the head,
whose layers are named `head_*`.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zoo_transfer.errors import BuildArgumentError, LayerReferenceError
from zoo_transfer.registry import Card, get_card

from ._backbone import backbone_model, supports
from ._keras_apps import resolve_tap
from ._weights import _match_variables, assign_by_name
from .stages import ancestors, stage_of_layers
from .stages import units as freeze_units

POOLINGS = ("avg", "max", "avgmax", "flatten")
TOKEN_POOLINGS = ("cls", "mean", "cls_mean", "avg", "max", "avgmax")
BN_POLICIES = ("frozen", "train")
BUILD_ARGUMENTS = "_zoo_build_arguments"  # the attribute `build` leaves on its model


# ------------------------------------------------------------------ validation
def _check_num_classes(num_classes: Any) -> int | None:
    """`num_classes` as a Python int (numpy integers such as `y.max() + 1` included)."""
    if num_classes is None:
        return None
    if (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, numbers.Integral)
        or num_classes < 1
    ):
        raise BuildArgumentError(
            "Expected `num_classes` to be a positive int (1 gives a sigmoid output) or None "
            f"(keep the pretrained classifier). Received: num_classes={num_classes!r}"
        )
    return int(num_classes)


def _check_input_shape(card: Card, input_shape: Any) -> tuple:
    if input_shape is None:
        return tuple(card.input_size)
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise BuildArgumentError(
            f"Expected `input_shape` as (height, width, 3). Received: input_shape={input_shape!r}"
        )
    if shape[2] != 3:
        raise BuildArgumentError(
            f"{card.name} takes RGB images, but input_shape={shape} has {shape[2]} channel(s). "
            "Convert grayscale to RGB first (e.g. `np.repeat(x, 3, axis=-1)` or "
            "`tf.image.grayscale_to_rgb`; zoo_transfer.data does it for you) and drop alpha."
        )
    low = card.min_input_size[0]
    for dim in shape[:2]:
        if dim is not None and dim < low:
            raise BuildArgumentError(
                f"{card.name} needs inputs of at least {low}x{low} pixels. Received: "
                f"input_shape={shape}. Upsample the images or pick another model."
            )
    return shape


def _cut_ref(card: Card, cut: Any) -> str:
    """The layer reference for `cut`: a stage name, a stage index, or a layer name."""
    if cut is None:
        return card.feature_layer
    stage = None
    if isinstance(cut, int) and not isinstance(cut, bool):
        if -len(card.stages) <= cut < len(card.stages):
            stage = card.stages[cut]
    elif isinstance(cut, str):
        if cut not in card.stage_names:
            return cut  # a layer name; resolved against the model below
        stage = card.stage(cut)
    if stage is not None and stage.nested:
        raise BuildArgumentError(
            f"{card.name} cannot be cut at {stage.name}: keras-hub runs that block inside "
            f"the layer {stage.layer.split('/')[0]!r} together with the others, so it has "
            "no output of its own (it still unfreezes and takes a learning rate of its "
            f"own). Cut at one of: {', '.join(s.name for s in card.cut_stages)}."
        )
    if stage is not None:
        return stage.layer
    raise BuildArgumentError(
        f"Unknown cut {cut!r} for {card.name}. Use a stage name "
        f"({', '.join(card.stage_names)}), a stage index (0-{len(card.stages) - 1}), or a "
        "Keras layer name."
    )


# ------------------------------------------------------------------ pieces
def normalization_layer(card: Card, name: str = "preprocess") -> Any:
    """A frozen `Dense(3)` on the channel axis computing the card's normalisation.

    `y[c] = (x[order[c]] * scale - mean[c]) / std[c]` is linear, so one core layer
    expresses every mode (channel swap included) and `.keras` files need no custom
    class. It runs in float32 even under mixed precision.
    """
    import keras

    p = card.preprocessing
    kernel = np.zeros((3, 3), "float32")
    for c in range(3):
        src = 2 - c if p.channel_order == "BGR" else c
        kernel[src, c] = p.scale / p.std[c]
    bias = -np.asarray(p.mean, "float32") / np.asarray(p.std, "float32")
    layer = keras.layers.Dense(3, trainable=False, dtype="float32", name=name)
    layer.build((None, 3))
    layer.set_weights([kernel, bias.astype("float32")])
    return layer


def pool_layer(pooling: str | None) -> Any:
    import keras

    # avgmax: `assemble` adds the max pooling beside it; tokens: see `_pool_tokens`
    if pooling in ("avg", "avgmax", "mean", "cls", "cls_mean"):
        return keras.layers.GlobalAveragePooling2D(name="head_pool")
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="head_pool")
    if pooling == "flatten":
        return keras.layers.Flatten(name="head_flatten")
    raise BuildArgumentError(f"Expected `pooling` in {POOLINGS}. Received: pooling={pooling!r}")


def new_head(
    num_classes: int,
    *,
    pooling: str = "avg",
    hidden: Sequence[int] = (),
    dropout: float = 0.0,
    classifier_activation: str | None = "softmax",
) -> list[Any]:
    """Pooling, optional hidden Dense layers and dropout, then `Dense(num_classes)`."""
    import keras

    if not 0.0 <= float(dropout) < 1.0:
        raise BuildArgumentError(f"Expected 0 <= `dropout` < 1. Received: dropout={dropout!r}")
    layers = [pool_layer(pooling)]
    for i, units in enumerate(hidden, start=1):
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise BuildArgumentError(
                f"Expected `head` to be a list of positive layer widths. Received: {hidden!r}"
            )
        layers.append(keras.layers.Dense(units, activation="relu", name=f"head_dense_{i}"))
    if dropout:
        layers.append(keras.layers.Dropout(dropout, name="head_dropout"))
    layers.append(keras.layers.Dense(num_classes, name="head_logits"))
    if num_classes == 1 and classifier_activation == "softmax":
        classifier_activation = "sigmoid"
    layers.append(
        keras.layers.Activation(
            classifier_activation or "linear", dtype="float32", name="head_output"
        )
    )
    return layers


# ------------------------------------------------------------------ freezing
def _freeze(backbone: Any, card: Card, trainable_from: Any) -> None:
    """Freeze the backbone; with `trainable_from`, leave that stage and later trainable.

    A frozen BatchNorm layer (`trainable=False`) always runs in inference mode. The
    units frozen are `stages.units`: a keras-hub encoder's blocks one by one.
    """
    if trainable_from is None:
        backbone.trainable = False
        return
    if isinstance(trainable_from, int) and not isinstance(trainable_from, bool):
        if not -len(card.stages) <= trainable_from < len(card.stages):
            raise BuildArgumentError(
                f"`trainable_from` index {trainable_from} is out of range for {card.name} "
                f"({len(card.stages)} stages: {', '.join(card.stage_names)})."
            )
        trainable_from = card.stages[trainable_from].name
    parts = freeze_units(backbone)
    if trainable_from in card.stage_names:
        stage_of = stage_of_layers(backbone, card)
        order = card.stage_names
        start = order.index(trainable_from)
        frozen = {path for path, stage in stage_of.items() if order.index(stage) < start}
    elif trainable_from in parts and "/" in trainable_from:  # a block: those before it
        paths = list(parts)
        frozen = set(paths[: paths.index(trainable_from)])
    else:
        try:
            layer = backbone.get_layer(trainable_from)
        except ValueError:
            raise BuildArgumentError(
                f"Unknown `trainable_from` {trainable_from!r} for {card.name}: use a stage "
                f"({', '.join(card.stage_names)}), a stage index, or a layer of the backbone."
            ) from None
        before: set[int] = set()  # the layers it reads from, directly or not
        for t in layer._inbound_nodes[0].input_tensors:
            before |= ancestors(t)
        frozen = {p for p in parts if id(backbone.get_layer(p.split("/")[0])) in before}
    backbone.trainable = True  # cascades to every sublayer; then each unit its own state
    for path, layer in parts.items():
        layer.trainable = path not in frozen


def freeze_batchnorm(backbone: Any) -> None:
    """Keep every BatchNorm layer in inference mode: `trainable=False`.

    Keras 3 ignores `training=False` on a nested model's call once the outer model
    trains (the outer `training=True` overrides it, keras-team/keras#20285), so the
    Keras guide's `base_model(x, training=False)` would let the moving statistics of
    unfrozen stages drift. A BatchNorm layer with `trainable=False` always runs in
    inference mode; its scale and offset stay fixed too.
    """
    import keras

    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


# ------------------------------------------------------------------ assembly
def assemble(
    card: Card,
    *,
    weights: Any,
    input_shape: tuple,
    head_layers: list[Any] | None,
    cut: Any = None,
    trainable_from: Any = None,
    include_preprocessing: bool = True,
    bn: str = "frozen",
    name: str | None = None,
    head_stages: Sequence[str] = (),
    pooling: str = "avg",
    lora_rank: int | None = None,
) -> Any:
    """Normalisation -> backbone (cut, frozen) -> `head_layers` (None: keep the top).

    `head_stages`: stages before the cut whose features the head reads too: the
    backbone then has one output per stage and the cut, each pooled by its own layer
    (`head_pool_<stage>`, `head_pool`), concatenated (`head_concat`) in front of the rest
    of `head_layers`. `pooling="avgmax"` pools every map both ways (`_pool_and_join`).
    """
    import keras

    if bn not in BN_POLICIES:
        raise BuildArgumentError(f"Expected `bn` in {BN_POLICIES}. Received: bn={bn!r}")
    keep_top = head_layers is None
    kwargs: dict[str, Any] = {}
    builtin = card.preprocessing.mode == "builtin"
    if builtin and not include_preprocessing:
        if not supports(card, "include_preprocessing"):
            raise BuildArgumentError(
                f"{card.name} normalises inside the network and Keras offers no way to turn "
                "that off: feed raw 0-255 RGB and keep include_preprocessing=True."
            )
        kwargs["include_preprocessing"] = False
    full = backbone_model(
        card, include_top=keep_top, weights=weights, input_shape=input_shape, **kwargs
    )
    if lora_rank is not None:
        from ._lora import enable_lora

        if trainable_from is not None:
            raise BuildArgumentError(
                "lora_rank trains low-rank updates of the frozen backbone; it does not mix "
                "with trainable_from. Pass one of them."
            )
        enable_lora(card, full, lora_rank)
    if keep_top:
        backbone = keras.Model(_image_input(full), full.output, name=card.arch)
    else:
        ref = _cut_ref(card, cut)
        try:
            tap = resolve_tap(full, ref)
        except LayerReferenceError as exc:
            raise BuildArgumentError(
                f"Unknown cut {cut!r} for {card.name}: {exc} Stages: {', '.join(card.stage_names)}."
            ) from None
        taps = []
        for stage in head_stages:
            taps.append(resolve_tap(full, _cut_ref(card, stage)))
        backbone = keras.Model(_image_input(full), [*taps, tap] if taps else tap, name=card.arch)
    backbone.zoo_card = card.name  # the variant; the layer name is the architecture's
    if lora_rank is None:  # with LoRA, enable_lora froze all but the LoRA weights
        _freeze(backbone, card, trainable_from)
    if bn == "frozen":
        freeze_batchnorm(backbone)

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if include_preprocessing and not builtin:
        x = normalization_layer(card)(x)
    x = backbone(x)
    if keep_top:
        if keras.config.dtype_policy().compute_dtype != "float32":
            x = keras.layers.Activation("linear", dtype="float32", name="head_output")(x)
    else:
        maps = list(x) if head_stages else [x]
        pooled = len(maps[-1].shape) == 2  # the cut is already pooled
        if pooled and not head_stages and head_layers[0].name in ("head_pool", "head_flatten"):
            head_layers = head_layers[1:]
        elif card.tokens is not None:  # token maps, and a pooled cut (SigLIP's head) as it is
            x = _pool_tokens(maps, [*head_stages, ""], card.tokens.prefix, pooling)
            head_layers = head_layers[1:]
        elif head_stages or pooling == "avgmax":
            x = _pool_and_join(maps, [*head_stages, ""], head_layers[0], pooling)
            head_layers = head_layers[1:]
        for layer in head_layers:
            x = layer(x)
    model = keras.Model(inputs, x, name=name or f"{card.arch}_transfer")
    if not keep_top:
        _head_from_export(model, backbone, weights)
    return model


def _image_input(model: Any) -> Any:
    """The model's one image input (keras-hub backbones name it in a dict)."""
    import keras

    return keras.tree.flatten(model.input)[0]


def _head_from_export(model: Any, backbone: Any, weights: Any) -> None:
    """A TF.js folder that zoo-transfer exported holds the trained head too: load it when
    every head layer is there with the same shapes (same classes and head options);
    otherwise the head stays new, as for any other weights source."""
    if not isinstance(weights, (str, Path)):
        return
    from ._tfjs import read_model_json, read_tfjs_weights, tfjs_folder

    folder = tfjs_folder(weights)
    if folder is None or "zoo_transfer" not in read_model_json(folder).get(
        "userDefinedMetadata", {}
    ):
        return
    head = [
        layer
        for layer in model.layers
        if layer is not backbone and layer.weights and layer.name.startswith("head_")
    ]
    named = read_tfjs_weights(folder)
    if all(
        layer.name in named and _match_variables(layer.weights, named[layer.name]) is not None
        for layer in head
    ):
        assign_by_name(head, named, source=f"TF.js folder {folder}")


def _pool_tokens(maps: list[Any], stages: list[str], prefix: int, pooling: str) -> Any:
    """Each token map `(batch, prefix + patches, D)` pooled to a vector, all joined.

    `cls`: the first token; `mean`/`avg`: the mean of the patch tokens; `max`: their
    maximum; `avgmax`: both; `cls_mean`: the class token and the patch mean (DINOv2's
    linear-probe features). Core layers only (`Cropping1D`, `Flatten`, global pooling),
    so the saved model needs no custom class; layer names start with `head_`. A map
    already pooled by the model's own layer (`(batch, D)`: SigLIP's head) joins as it is.
    """
    import keras

    if pooling not in TOKEN_POOLINGS:
        raise BuildArgumentError(
            f"Expected `pooling` in {TOKEN_POOLINGS} for a transformer. Received: "
            f"pooling={pooling!r}"
        )
    pooled = []
    for stage, tokens in zip(stages, maps, strict=True):
        if len(tokens.shape) == 2:
            pooled.append(tokens)
            continue
        suffix = f"_{stage}" if stage else ""
        count = int(tokens.shape[1])
        if pooling in ("cls", "cls_mean"):
            first = keras.layers.Cropping1D((0, count - 1), name=f"head_cls_token{suffix}")(tokens)
            pooled.append(keras.layers.Flatten(name=f"head_cls{suffix}")(first))
        if pooling != "cls":
            patches = keras.layers.Cropping1D((prefix, 0), name=f"head_patches{suffix}")(tokens)
            if pooling != "max":
                pooled.append(
                    keras.layers.GlobalAveragePooling1D(name=f"head_pool{suffix}")(patches)
                )
            if pooling in ("max", "avgmax"):
                pooled.append(
                    keras.layers.GlobalMaxPooling1D(name=f"head_maxpool{suffix}")(patches)
                )
    if len(pooled) == 1:
        return pooled[0]
    return keras.layers.Concatenate(name="head_concat")(pooled)


def _pool_and_join(maps: list[Any], stages: list[str], pool: Any, pooling: str) -> Any:
    """Each feature map pooled (average, max, or both for `avgmax`), all concatenated.

    Layer names: `head_pool_<stage>` and `head_maxpool_<stage>`; the cut's are `head_pool`
    (the layer `pool`) and `head_maxpool`; the join is `head_concat`.
    """
    import keras

    pooled = []
    for stage, tensor in zip(stages, maps, strict=True):
        suffix = f"_{stage}" if stage else ""
        first = pool if not stage else type(pool)(name=f"head_pool{suffix}")
        pooled.append(first(tensor))
        if pooling == "avgmax":
            pooled.append(keras.layers.GlobalMaxPooling2D(name=f"head_maxpool{suffix}")(tensor))
    return keras.layers.Concatenate(name="head_concat")(pooled)


def build(
    name: str,
    num_classes: int | None = None,
    *,
    cut: str | int | None = None,
    trainable_from: str | int | None = None,
    head: Sequence[int] = (),
    dropout: float = 0.0,
    pooling: str | None = None,
    weights: Any = "imagenet",
    input_shape: tuple[int | None, int | None, int] | None = None,
    include_preprocessing: bool = True,
    classifier_activation: str | None = "softmax",
    bn: str = "frozen",
    model_name: str | None = None,
    head_stages: int | Sequence[str] = 1,
    lora_rank: int | None = None,
) -> Any:
    """Build a transfer-learning model from the zoo in one call.

    Args:
        name: a registry name (`"resnet50"`, `"mobilenet_v2.a035_96"`, `"ResNet50"`).
        num_classes: `None` keeps the pretrained ImageNet classifier; an int adds a new
            head (`1` gives a sigmoid).
        cut: where the backbone ends: a stage (`"stage3"`), a stage index, or a Keras
            layer name. Defaults to the card's feature layer.
        trainable_from: `None` freezes the whole backbone; a stage (or index, or layer
            name) leaves it and everything after trainable (BatchNorm: see `bn`).
        head: widths of hidden `Dense` layers between pooling and the classifier.
        dropout: dropout rate before the classifier.
        pooling: `"avg"` (the default for CNNs), `"max"`, `"avgmax"` (average and max
            pooling side by side: +1 point for a probe on two of three tasks of the
            defaults sweep) or `"flatten"`. A transformer card (keras-hub) pools its
            tokens: `"cls"` (class token), `"mean"`/`"avg"` (patch tokens), `"max"`,
            `"avgmax"`, or `"cls_mean"`; its default is the card's `tokens.pool`. Where
            the card's feature layer is the model's own pooling layer (SigLIP), the
            default cut is pooled already and `pooling` applies to blocks.
        weights: `"imagenet"` (Keras' cache, hash checked), a `.h5`/`.weights.h5` file,
            a TensorFlow.js folder, or `None`.
        input_shape: `(H, W, 3)`; defaults to the card's size; `(None, None, 3)` takes
            any size the architecture accepts.
        include_preprocessing: run the card's normalisation inside the model (the model
            then takes raw RGB 0-255). `False` if you normalise yourself.
        classifier_activation: final activation (Keras' convention), `None` for logits.
        bn: `"frozen"` (default) keeps every BatchNorm layer in inference mode
            (`trainable=False`): its statistics never change, even in trainable stages.
            `"train"` lets BatchNorm layers of trainable stages train and update their
            statistics during `fit`.
        model_name: name of the returned model (default `<arch>_transfer`).
        head_stages: how many stages' features the new head reads: `1` (default) the
            cut's alone; `n` the last n stages up to the cut, each pooled, concatenated
            (earlier stages hold more generic features, which transfer further from
            ImageNet: `benchmarks/defaults_sweep.py` measured +1 to +2 points for a
            probe on the last 3-4 stages on three tasks); or a list of stage names.
        lora_rank: LoRA of this rank: on a keras-hub transformer the attention query
            and value projections (keras-hub's `enable_lora`), on a CNN every `Conv2D`
            and `Dense` of the backbone (Keras' layer-level LoRA); the rest of the
            backbone stays frozen. `zoo_transfer.save_lora` keeps the trained LoRA and
            head weights on their own.

    ```python
    model = zoo_transfer.build("resnet50", num_classes=5)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(images_0_255, labels, epochs=3)
    ```
    """
    card = get_card(name)
    num_classes = _check_num_classes(num_classes)
    shape = _check_input_shape(card, input_shape)
    if pooling is None:
        pooling = card.tokens.pool if card.tokens is not None else "avg"
    elif card.tokens is None and pooling in ("cls", "mean", "cls_mean"):
        raise BuildArgumentError(
            f"pooling={pooling!r} pools a transformer's tokens, and {card.name} is a CNN. "
            f"Use one of {POOLINGS}."
        )
    elif card.tokens is not None and card.tokens.prefix == 0 and pooling in ("cls", "cls_mean"):
        raise BuildArgumentError(
            f"pooling={pooling!r} reads a class token, and {card.name} has none (all its "
            "tokens are patches). Use 'mean', 'max' or 'avgmax'."
        )
    if num_classes is None:
        if cut is not None:
            raise BuildArgumentError(
                f"`cut={cut!r}` drops the pretrained classifier, so it needs `num_classes`. "
                "Pass num_classes=N for a new head, or use zoo_transfer.feature_extractor."
            )
        head_layers = None
    else:
        head_layers = new_head(
            num_classes,
            pooling=pooling,
            hidden=head,
            dropout=dropout,
            classifier_activation=classifier_activation,
        )
    extra = _head_stages(card, cut, head_stages, pooling, keep_top=num_classes is None)
    model = assemble(
        card,
        weights=weights,
        input_shape=shape,
        head_layers=head_layers,
        cut=cut,
        trainable_from=trainable_from,
        include_preprocessing=include_preprocessing,
        bn=bn,
        name=model_name,
        head_stages=extra,
        pooling=pooling,
        lora_rank=lora_rank,
    )
    # how to build it again at another size (`resize_model`); not saved with the model
    object.__setattr__(model, BUILD_ARGUMENTS, {
        "name": card.name, "num_classes": num_classes, "cut": cut,
        "trainable_from": trainable_from, "head": tuple(head), "dropout": dropout,
        "pooling": pooling, "input_shape": shape,
        "include_preprocessing": include_preprocessing,
        "classifier_activation": classifier_activation, "bn": bn, "model_name": model_name,
        "head_stages": head_stages, "lora_rank": lora_rank,
    })  # fmt: skip
    return model


def _head_stages(
    card: Card, cut: Any, head_stages: int | Sequence[str], pooling: str, *, keep_top: bool
) -> list[str]:
    """The stages before the cut that the head reads besides it (see `build`)."""
    names = [s.name for s in card.cut_stages]  # a block inside an encoder is no cut
    if isinstance(head_stages, bool) or not isinstance(head_stages, (int, list, tuple)):
        raise BuildArgumentError(
            f"Expected head_stages as an int >= 1 or a list of stage names. Received: "
            f"head_stages={head_stages!r}"
        )
    if head_stages == 1 or head_stages == ():
        return []
    if keep_top:
        raise BuildArgumentError(
            "head_stages needs a new head: pass num_classes=N, or keep head_stages=1."
        )
    if pooling not in ("avg", "max", "avgmax") and card.tokens is None:
        raise BuildArgumentError(
            f"head_stages pools every stage: use pooling='avg', 'max' or 'avgmax'. Received: "
            f"pooling={pooling!r}"
        )
    ref = _cut_ref(card, cut)
    last = next((i for i, st in enumerate(card.cut_stages) if st.layer == ref), None)
    if last is None and ref == card.feature_layer:  # the model's own pooling, after them all
        last = len(names)
    if last is None:
        raise BuildArgumentError(
            f"head_stages reads stages up to the cut, but the cut {cut!r} is not a stage of "
            f"{card.name} ({', '.join(names)}). Cut at a stage, or keep head_stages=1."
        )
    if isinstance(head_stages, int):
        if head_stages < 1:
            raise BuildArgumentError(f"Expected head_stages >= 1. Received: {head_stages}")
        return names[max(0, last + 1 - head_stages) : last]
    unknown = [st for st in head_stages if st not in names[: last + 1]]
    if unknown:
        at = names[last] if last < len(names) else ref
        raise BuildArgumentError(
            f"Unknown head stage {unknown[0]!r} for {card.name} cut at {at!r}. "
            f"Choose among: {', '.join(names[: last + 1])}."
        )
    return [st for st in names[:last] if st in head_stages]


SOURCE_HEAD = "source_head"  # feature_extractor's key for the pretrained classifier's output


def feature_extractor(
    name: str,
    cuts: Sequence[str | int] = ("stage2", "stage3", "stage4"),
    *,
    weights: Any = "imagenet",
    input_shape: tuple[int | None, int | None, int] | None = None,
    include_preprocessing: bool = True,
    trainable: bool = False,
    source_head: bool = False,
) -> Any:
    """A model whose outputs are the backbone's features at `cuts`, like timm's `features_only`.

    Outputs are a dict keyed by the cut names; the input is raw RGB 0-255.

    Args:
        source_head: also output the pretrained classifier's probabilities (over the
            card's `num_classes` source classes), under the key `"source_head"`, from
            the same pass. The weights must then hold the classifier: a file without
            it raises `WeightsMismatchError`, ImageNet weights without a cached top
            `WeightsUnavailableError`.

    ```python
    fx = zoo_transfer.feature_extractor("resnet50", cuts=["stage3", "stage4"], weights=None)
    fx(images)["stage4"].shape   # (batch, 7, 7, 2048)
    ```
    """
    import keras

    card = get_card(name)
    shape = _check_input_shape(card, input_shape)
    if not cuts:
        raise BuildArgumentError("Expected at least one cut, e.g. cuts=['stage4'].")
    kwargs: dict[str, Any] = {}
    builtin = card.preprocessing.mode == "builtin"
    if builtin and not include_preprocessing and supports(card, "include_preprocessing"):
        kwargs["include_preprocessing"] = False
    full = backbone_model(
        card, include_top=source_head, weights=weights, input_shape=shape, **kwargs
    )
    keys = [card.stages[c].name if isinstance(c, int) else str(c) for c in cuts]
    if source_head and SOURCE_HEAD in keys:
        raise BuildArgumentError(
            f"A cut named {SOURCE_HEAD!r} would collide with the source head's output; "
            "name the cut by its stage or layer."
        )
    taps = []
    for c in cuts:
        try:
            taps.append(resolve_tap(full, _cut_ref(card, c)))
        except LayerReferenceError as exc:
            raise BuildArgumentError(f"Unknown cut {c!r} for {card.name}: {exc}") from None
    if source_head:
        keys.append(SOURCE_HEAD)
        taps.append(full.output)
    backbone = keras.Model(_image_input(full), taps, name=card.arch)
    backbone.zoo_card = card.name
    backbone.trainable = trainable
    inputs = keras.Input(shape=shape, name="image")
    x = normalization_layer(card)(inputs) if include_preprocessing and not builtin else inputs
    outputs = backbone(x)
    return keras.Model(inputs, dict(zip(keys, outputs, strict=True)), name=f"{card.arch}_features")
