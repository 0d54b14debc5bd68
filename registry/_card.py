"""The model card: one pretrained image model, described as data.

A card holds the facts a user needs to reuse a pretrained network correctly: how to
build it, what input it expects and how to normalise it, where it may be cut, and
where its weights come from. Cards are loaded from JSON and validated field by field;
a bad field raises `CardValidationError` naming the file, the card and the field.

Layer references (`Stage.layer`, `Card.feature_layer`) are Keras layer names the
constructor sets explicitly, so they resolve in any process. Where the tensor wanted
is the output of an auto-named layer (`activation_17`) or of a bare op, the reference
is written `"named_layer+N"`: follow the single consumer of `named_layer` N times. An
output of a layer with several outputs (keras-hub's transformer encoders return every
block's tokens) is `"named_layer:K"`, the K-th of its flattened outputs.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from zoo_transfer.errors import CardValidationError, UnknownStageError

ARCH_RE = re.compile(r"^[a-z][a-z0-9_]*$")
TAG_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")
LAYER_REF_RE = re.compile(r"^(?P<name>[^+:/\s]+)(:(?P<index>[0-9]+))?(\+(?P<hops>[1-9][0-9]*))?$")
# A block that runs inside one layer with its siblings (keras-hub's ViT encoder):
# `outer/inner`, sublayer `inner` of layer `outer`. Not a tensor: no cut there.
NESTED_REF_RE = re.compile(r"^(?P<outer>[^+:/\s]+)/(?P<inner>[^+:/\s]+)$")
STAGE_NAME_RE = re.compile(r"^(stem|stage[1-9]|block[1-9][0-9]?)$")
MODES = ("caffe", "tf", "torch", "builtin", "converter")
TOKEN_POOLS = ("cls", "mean", "cls_mean")
CHANNEL_ORDERS = ("RGB", "BGR")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "area", "lanczos3")


@dataclass(frozen=True)
class Preprocessing:
    """How raw RGB pixels in 0-255 become the network's input.

    The normalisation is `y[c] = (x[order[c]] * scale - mean[c]) / std[c]`, with
    `mean`/`std` given in the network's channel order. Mode `builtin` means the
    network applies it itself (its first layers), so callers pass raw 0-255 RGB. Mode
    `converter` is a keras-hub preset's `ImageConverter` (`y = x * s[c] + o[c]` on RGB
    0-255), written here with `scale=1`, `std = 1/s` and `mean = -o/s`.
    """

    mode: str
    channel_order: str
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"
    crop_pct: float = 0.875

    @property
    def mean_rgb01(self) -> tuple[float, float, float]:
        """The mean as timm and torchvision write it: RGB order, pixels in 0-1."""
        rgb = self._to_rgb(self.mean)
        return tuple(m / (255.0 * self.scale) for m in rgb)  # type: ignore[return-value]

    @property
    def std_rgb01(self) -> tuple[float, float, float]:
        """The std as timm and torchvision write it: RGB order, pixels in 0-1."""
        rgb = self._to_rgb(self.std)
        return tuple(s / (255.0 * self.scale) for s in rgb)  # type: ignore[return-value]

    def _to_rgb(self, values: Sequence[float]) -> tuple[float, ...]:
        return tuple(values[::-1]) if self.channel_order == "BGR" else tuple(values)

    def normalize(self, images: Any) -> Any:
        """Apply this normalisation to raw RGB 0-255 images (numpy, channels last).

        Returns a float32 numpy array. For mode `builtin` the network normalises
        internally; this still returns what its built-in layers compute.

        ```python
        card = zoo_transfer.get_card("resnet50")
        x = card.preprocessing.normalize(np.zeros((1, 224, 224, 3)))
        ```
        """
        import numpy as np

        x = np.asarray(images, dtype=np.float32)
        if self.channel_order == "BGR":
            x = x[..., ::-1]
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        return ((x * np.float32(self.scale) - mean) / std).astype(np.float32)


@dataclass(frozen=True)
class Stage:
    """A named cut point: the tensor that ends a stage of the network.

    `stride` is the output stride (input size / feature size, rounded to a power of
    two for networks with valid padding); `shape` is (H, W, C) at the card's input
    size. `stageK` always has stride 2**(K+1); `stem` is the earliest tap. A transformer
    card's stages are its blocks, `block1`..`blockN`, all at the patch size's stride;
    their `shape` is the patch grid and width (H/patch, W/patch, D), and the tensor is
    `(batch, prefix + H/patch * W/patch, D)` with the card's `tokens.prefix` tokens first.

    A block that keras-hub runs inside one encoder layer with the others (ViT, DeiT)
    has no tensor of its own: its `layer` is `"encoder/block"`, the sublayer, and the
    stage is `nested`. It can be frozen, unfrozen and given its own learning rate, but
    not cut at.
    """

    name: str
    layer: str
    stride: int
    shape: tuple[int, int, int]

    @property
    def channels(self) -> int:
        return self.shape[2]

    @property
    def nested(self) -> bool:
        """Whether the stage ends inside a layer (`"encoder/block"`): no cut there."""
        return NESTED_REF_RE.match(self.layer) is not None


@dataclass(frozen=True)
class Tokens:
    """How a transformer's stage outputs are laid out and pooled into one vector.

    `prefix` tokens (class, distillation, register tokens) come before the patch
    tokens; `pool` is how the pretrained model summarises an image: `cls` (the first
    token), `mean` (the mean of the patch tokens) or `cls_mean` (both, concatenated:
    DINOv2's linear-probe features).
    """

    prefix: int
    pool: str


@dataclass(frozen=True)
class WeightsFile:
    """One weights file exactly as Keras requests it (`keras.utils.get_file`).

    A card file may give `url` as `package://PKG/path/in/package` for weights shipped
    inside an installed Python package (`location` is then that file's `file://` URL).
    Such a file is used in place (hash checked), never copied to the Keras cache, so a
    package upgrade can never meet a stale cached copy.
    """

    file: str
    url: str
    hash: str | None = None
    cache_subdir: str = "models"

    @property
    def packaged(self) -> bool:
        return self.url.startswith("package://")

    @property
    def location(self) -> str:
        """Where the file is fetched from: `url`, with `package://` resolved."""
        return resolve_package_url(self.url)


@dataclass(frozen=True)
class Card:
    """Everything zoo-transfer knows about one pretrained model.

    `name` is `arch.tag`, like timm: one architecture can have several weight sets
    (MobileNetV2 at each width and resolution), and the first tag registered for an
    arch is its default, so `get_card("mobilenet_v2")` works.

    `feature_layer` (what `build` reads by default) is the last stage's layer; a
    transformer card may name instead the layer after it that pools the tokens into one
    vector, the pretrained model's own image embedding (SigLIP's attention-pooling head).

    ```python
    card = zoo_transfer.get_card("resnet50")
    card.input_size          # (224, 224, 3)
    card.stage("stage3").layer  # 'conv4_block6_out'
    ```
    """

    arch: str
    tag: str
    family: str
    constructor: str
    preprocess_module: str | None
    input_size: tuple[int, int, int]
    min_input_size: tuple[int, int, int]
    preprocessing: Preprocessing
    stages: tuple[Stage, ...]
    feature_layer: str
    head_layers: tuple[str, ...]
    params: int
    params_no_top: int
    license: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    num_classes: int = 1000  # 0: no pretrained classifier (a keras-hub backbone)
    weights_top: WeightsFile | None = None
    weights_no_top: WeightsFile | None = None
    top1: float | None = None
    top5: float | None = None
    accuracy_source: str | None = None
    preset: str | None = None
    tokens: Tokens | None = None

    @property
    def name(self) -> str:
        return f"{self.arch}.{self.tag}"

    @property
    def zoo(self) -> str:
        """Where the model comes from: `hub` (a keras-hub preset) or `applications`."""
        return "hub" if self.preset else "applications"

    def __hash__(self) -> int:  # kwargs is a dict, so hash by the unique name
        return hash(self.name)

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    @property
    def cut_stages(self) -> tuple[Stage, ...]:
        """The stages the network can be cut at (all but the `nested` ones)."""
        return tuple(s for s in self.stages if not s.nested)

    def stage(self, name: str) -> Stage:
        """The stage called `name`; `UnknownStageError` (a `KeyError`) listing the valid
        names otherwise."""
        for s in self.stages:
            if s.name == name:
                return s
        raise UnknownStageError(
            f"{self.name} has no stage {name!r}. Its stages are: " + ", ".join(self.stage_names)
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; `card_from_dict(card.to_dict())` gives the card back."""
        d = json.loads(json.dumps(asdict(self)))  # tuples -> lists, as in the card files
        d["name"] = self.name
        return d


# --------------------------------------------------------------------------- loading

_FIELDS_REQUIRED = (
    "arch",
    "tag",
    "family",
    "constructor",
    "input_size",
    "min_input_size",
    "preprocessing",
    "stages",
    "feature_layer",
    "head_layers",
    "params",
    "params_no_top",
    "license",
)
_FIELDS_OPTIONAL = (
    "preprocess_module",
    "kwargs",
    "aliases",
    "num_classes",
    "weights_top",
    "weights_no_top",
    "top1",
    "top5",
    "accuracy_source",
    "name",
    "preset",
    "tokens",
)


class _Checker:
    """Field-level checks that raise `CardValidationError` with file, card and field."""

    def __init__(self, source: str, card: str | None, prefix: str = ""):
        self.source, self.card, self.prefix = source, card, prefix

    def nested(self, key: str) -> _Checker:
        """A checker for the object under `key`, whose errors name `key.field`."""
        return _Checker(self.source, self.card, f"{self.prefix}{key}.")

    def fail(self, fieldname: str, problem: str) -> None:
        raise CardValidationError(self.source, self.card, self.prefix + fieldname, problem)

    def _present(self, d: Mapping, key: str, optional: bool) -> bool:
        """Whether `key` has a value; a missing required field fails here."""
        if d.get(key) is not None:
            return True
        if not optional:
            self.fail(key, "is missing")
        return False

    def str_(
        self,
        d: Mapping,
        key: str,
        *,
        pattern: re.Pattern | None = None,
        choices: Sequence[str] | None = None,
        optional: bool = False,
    ) -> Any:
        if not self._present(d, key, optional):
            return None
        v = d[key]
        if not isinstance(v, str) or not v:
            self.fail(key, f"expected a non-empty string, got {v!r}")
        if pattern is not None and not pattern.match(v):
            self.fail(key, f"{v!r} does not match {pattern.pattern}")
        if choices is not None and v not in choices:
            self.fail(key, f"{v!r} is not one of {', '.join(choices)}")
        return v

    def int_(
        self,
        d: Mapping,
        key: str,
        *,
        minimum: int = 0,
        optional: bool = False,
        default: int | None = None,
    ) -> Any:
        if not self._present(d, key, optional):
            return default
        v = d[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            self.fail(key, f"expected an integer >= {minimum}, got {v!r}")
        return v

    def num(
        self,
        d: Mapping,
        key: str,
        *,
        positive: bool = False,
        optional: bool = False,
        default: float | None = None,
        maximum: float | None = None,
    ) -> Any:
        if not self._present(d, key, optional):
            return default
        v = d[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            self.fail(key, f"expected a number, got {v!r}")
        if positive and v <= 0:
            self.fail(key, f"expected a positive number, got {v!r}")
        if maximum is not None and v > maximum:
            self.fail(key, f"expected a number <= {maximum}, got {v!r}")
        return float(v)

    def triple(self, d: Mapping, key: str, *, kind: type, positive: bool = False) -> Any:
        v = d.get(key)
        ok = (
            isinstance(v, (list, tuple))
            and len(v) == 3
            and all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in v)
        )
        if ok and kind is int:
            ok = all(isinstance(e, int) for e in v)
        if ok and positive:
            ok = all(e > 0 for e in v)
        if not ok:
            what = "positive " if positive else ""
            self.fail(key, f"expected a list of 3 {what}{kind.__name__}s, got {v!r}")
        return tuple(kind(e) for e in v)

    def mapping(self, d: Mapping, key: str, *, optional: bool = False) -> Any:
        if not self._present(d, key, optional):
            return None
        v = d[key]
        if not isinstance(v, Mapping):
            self.fail(key, f"expected an object, got {type(v).__name__}")
        return v


def _check_layer_ref(c: _Checker, key: str, value: Any) -> str:
    if not isinstance(value, str) or not LAYER_REF_RE.match(value):
        c.fail(key, f"expected a layer name, or 'name+N' for N hops after it; got {value!r}")
    return value


def _preprocessing(c: _Checker, d: Mapping) -> Preprocessing:
    p = c.mapping(d, "preprocessing")
    sub = c.nested("preprocessing")
    unknown = set(p) - {
        "mode",
        "channel_order",
        "scale",
        "mean",
        "std",
        "interpolation",
        "crop_pct",
    }
    if unknown:
        sub.fail(sorted(unknown)[0], "unknown field")
    return Preprocessing(
        mode=sub.str_(p, "mode", choices=MODES),
        channel_order=sub.str_(p, "channel_order", choices=CHANNEL_ORDERS),
        scale=sub.num(p, "scale", positive=True),
        mean=sub.triple(p, "mean", kind=float),
        std=sub.triple(p, "std", kind=float, positive=True),
        interpolation=sub.str_(p, "interpolation", choices=INTERPOLATIONS, optional=True)
        or "bilinear",
        crop_pct=sub.num(p, "crop_pct", positive=True, optional=True, default=0.875, maximum=1.0),
    )


def _stages(c: _Checker, d: Mapping) -> tuple[Stage, ...]:
    raw = d.get("stages")
    if not isinstance(raw, (list, tuple)) or not raw:
        c.fail("stages", f"expected a non-empty list of stages, got {raw!r}")
    stages: list[Stage] = []
    for i, s in enumerate(raw):
        key = f"stages[{i}]"
        if not isinstance(s, Mapping):
            c.fail(key, f"expected an object, got {s!r}")
        sub = c.nested(key)
        name = sub.str_(s, "name", pattern=STAGE_NAME_RE)
        layer = s.get("layer")
        if not (isinstance(layer, str) and NESTED_REF_RE.match(layer) and name.startswith("block")):
            layer = _check_layer_ref(sub, "layer", layer)
        stride = sub.int_(s, "stride", minimum=1)
        if stride & (stride - 1) and not _token_stages(raw):  # a patch may be 14 px
            sub.fail("stride", f"expected a power of two, got {stride}")
        if name.startswith("stage") and stride != 2 ** (int(name[5:]) + 1):
            sub.fail("stride", f"{name} must have stride {2 ** (int(name[5:]) + 1)}, got {stride}")
        if name.startswith("block") and stages and stride != stages[-1].stride:
            sub.fail("stride", f"blocks share the patch stride {stages[-1].stride}, got {stride}")
        shape = sub.triple(s, "shape", kind=int, positive=True)
        if stages and (stride < stages[-1].stride or name in {x.name for x in stages}):
            sub.fail("name", f"stage {name!r} is out of order or repeated")
        kinds = {x.name.rstrip("0123456789") for x in stages if x.name != "stem"}
        if name != "stem" and kinds and name.rstrip("0123456789") not in kinds:
            sub.fail("name", f"{name!r}: a card's stages are all stageK or all blockK")
        if name.startswith("block") and stages and stages[-1].name.startswith("block"):
            if int(name[5:]) <= int(stages[-1].name[5:]):
                sub.fail("name", f"stage {name!r} is out of order or repeated")
        if name == "stem" and stages:
            sub.fail("name", "'stem' must be the first stage")
        stages.append(Stage(name=name, layer=layer, stride=stride, shape=shape))
    if stages[-1].nested:
        c.fail(f"stages[{len(stages) - 1}]", "the last stage must be a tensor, not 'outer/inner'")
    return tuple(stages)


def _token_stages(raw: Sequence[Any]) -> bool:
    """Whether the stages are a transformer's blocks (`blockK`)."""
    return any(isinstance(s, Mapping) and str(s.get("name", "")).startswith("block") for s in raw)


def _weights(c: _Checker, d: Mapping, key: str) -> WeightsFile | None:
    w = c.mapping(d, key, optional=True)
    if w is None:
        return None
    sub = c.nested(key)
    h = sub.str_(w, "hash", optional=True)
    if h is not None and not re.fullmatch(r"[0-9a-f]{32}|[0-9a-f]{64}", h):
        sub.fail("hash", f"expected an md5 or sha256 hex digest, got {h!r}")
    url = sub.str_(w, "url", pattern=re.compile(r"^(https?|file|package)://"))
    _resolve_url(sub, url)  # a package:// URL must name an installed package
    return WeightsFile(
        file=sub.str_(w, "file"),
        url=url,
        hash=h,
        cache_subdir=sub.str_(w, "cache_subdir", optional=True) or "models",
    )


def _tokens(c: _Checker, d: Mapping, stages: tuple[Stage, ...]) -> Tokens | None:
    t = c.mapping(d, "tokens", optional=True)
    blocks = any(s.name.startswith("block") for s in stages)
    if t is None:
        if blocks:
            c.fail("tokens", "is missing: a card whose stages are blocks says how they pool")
        return None
    sub = c.nested("tokens")
    unknown = set(t) - {"prefix", "pool"}
    if unknown:
        sub.fail(sorted(unknown)[0], "unknown field")
    return Tokens(
        prefix=sub.int_(t, "prefix", minimum=0), pool=sub.str_(t, "pool", choices=TOKEN_POOLS)
    )


def resolve_package_url(url: str) -> str:
    """`package://PKG/rel/path` -> the `file://` URL of that file in installed `PKG`.

    Other URLs come back unchanged. The package is located without importing it.
    Raises `ValueError` naming the package when it is not installed.

    ```python
    resolve_package_url("package://zoo_transfer/assets/digits.npz")  # 'file:///.../digits.npz'
    ```
    """
    import importlib.util
    from pathlib import Path
    from urllib.parse import urlsplit

    if not url.startswith("package://"):
        return url
    parts = urlsplit(url)
    try:
        spec = importlib.util.find_spec(parts.netloc)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise CardValidationError(
            url,
            None,
            "url",
            f"Expected `package://PKG/...` to name an installed Python package. Received: "
            f"{url!r}, and {parts.netloc!r} is not an installed package.",
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    return root.joinpath(*[p for p in parts.path.split("/") if p]).resolve().as_uri()


def _resolve_url(c: _Checker, url: str) -> str:
    try:
        return resolve_package_url(url)
    except CardValidationError as exc:
        c.fail("url", exc.problem)
        raise  # unreachable: fail() raises


def card_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Card:
    """Validate `data` against the card schema and return a `Card`.

    Raises `CardValidationError` naming `source`, the card and the first bad field.
    """
    if not isinstance(data, Mapping):
        raise CardValidationError(source, None, "<card>", f"expected an object, got {data!r}")
    label = data.get("name") or (
        f"{data.get('arch')}.{data.get('tag')}" if data.get("arch") else None
    )
    c = _Checker(source, label if isinstance(label, str) else None)
    unknown = set(data) - set(_FIELDS_REQUIRED) - set(_FIELDS_OPTIONAL)
    if unknown:
        c.fail(sorted(unknown)[0], "unknown field (check the spelling against the card schema)")
    missing = [k for k in _FIELDS_REQUIRED if data.get(k) is None]
    if missing:
        c.fail(missing[0], "is missing (required fields: " + ", ".join(_FIELDS_REQUIRED) + ")")
    arch = c.str_(data, "arch", pattern=ARCH_RE)
    tag = c.str_(data, "tag", pattern=TAG_RE)
    if "name" in data and data["name"] != f"{arch}.{tag}":
        c.fail("name", f"must equal arch.tag ({arch}.{tag!s}), got {data['name']!r}")
    kwargs = c.mapping(data, "kwargs", optional=True) or {}
    aliases = data.get("aliases", [])
    if not isinstance(aliases, (list, tuple)) or not all(isinstance(a, str) and a for a in aliases):
        c.fail("aliases", f"expected a list of strings, got {aliases!r}")
    head = data.get("head_layers")
    if not isinstance(head, (list, tuple)) or not all(isinstance(h, str) and h for h in head):
        c.fail("head_layers", f"expected a list of layer names, got {head!r}")
    input_size = c.triple(data, "input_size", kind=int, positive=True)
    min_input_size = c.triple(data, "min_input_size", kind=int, positive=True)
    if any(m > i for m, i in zip(min_input_size, input_size, strict=True)):
        c.fail("min_input_size", f"{min_input_size} is larger than input_size {input_size}")
    stages = _stages(c, data)
    feature_layer = _check_layer_ref(c, "feature_layer", data.get("feature_layer"))
    own_pooling = data.get("tokens") is not None  # a transformer's pooling layer after it
    if stages[-1].layer != feature_layer and (
        not own_pooling or feature_layer in {s.layer for s in stages}
    ):
        pooling = ", or a transformer's own pooling layer after it" if own_pooling else ""
        c.fail(
            "feature_layer",
            f"must be the layer of the last stage ({stages[-1].layer!r}){pooling}, "
            f"got {feature_layer!r}",
        )
    params = c.int_(data, "params", minimum=1)
    params_no_top = c.int_(data, "params_no_top", minimum=1)
    if params_no_top > params:
        c.fail("params_no_top", f"{params_no_top} is more than params ({params})")
    top1 = c.num(data, "top1", optional=True, maximum=1.0)
    top5 = c.num(data, "top5", optional=True, maximum=1.0)
    return Card(
        arch=arch,
        tag=tag,
        family=c.str_(data, "family", pattern=ARCH_RE),
        constructor=c.str_(data, "constructor"),
        preprocess_module=c.str_(data, "preprocess_module", optional=True),
        kwargs=dict(kwargs),
        aliases=tuple(aliases),
        input_size=input_size,
        min_input_size=min_input_size,
        preprocessing=_preprocessing(c, data),
        stages=stages,
        feature_layer=feature_layer,
        head_layers=tuple(head),
        num_classes=c.int_(data, "num_classes", minimum=0, optional=True, default=1000),
        params=params,
        params_no_top=params_no_top,
        weights_top=_weights(c, data, "weights_top"),
        weights_no_top=_weights(c, data, "weights_no_top"),
        license=c.str_(data, "license"),
        top1=top1,
        top5=top5,
        accuracy_source=c.str_(data, "accuracy_source", optional=True),
        preset=c.str_(data, "preset", optional=True),
        tokens=_tokens(c, data, stages),
    )
