"""Regenerate `cards/*.json` from the installed Keras (a maintainer's tool).

    python scripts/generate_cards.py [FAMILY ...]

Facts (layer names, shapes, parameter counts, weight files and hashes, minimum input
sizes) are read off real Keras builds. The judgement lives in `FAMILIES` below: which
layer ends each stage, the normalisation, licence and documented accuracy. Stage rules
pick, among layers whose output has the stage's stride, the last one in graph order
whose name matches; a name Keras generated itself (it changes between builds) is
refused. The tests in `tests/registry` check every card against Keras independently.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

KERAS_IO = "https://keras.io/api/applications/"
KERAS_APPS_README = "https://github.com/keras-team/keras-applications#performance"
MOBILENET_V3_DOC = "keras.applications.mobilenet_v3 docstring"

CAFFE = {
    "mode": "caffe",
    "channel_order": "BGR",
    "scale": 1.0,
    "mean": [103.939, 116.779, 123.68],
    "std": [1.0, 1.0, 1.0],
}
TF = {
    "mode": "tf",
    "channel_order": "RGB",
    "scale": 1 / 127.5,
    "mean": [1.0, 1.0, 1.0],
    "std": [1.0, 1.0, 1.0],
}
TORCH = {
    "mode": "torch",
    "channel_order": "RGB",
    "scale": 1 / 255.0,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}
BUILTIN_TORCH = dict(TORCH, mode="builtin")
BUILTIN_TF = dict(TF, mode="builtin")
BUILTIN_128 = {
    "mode": "builtin",
    "channel_order": "RGB",
    "scale": 1 / 128.0,
    "mean": [1.0, 1.0, 1.0],
    "std": [1.0, 1.0, 1.0],
}


# Stage rules: (stage, stride, regex, hops). `hops` > 0 appends "+hops" to the match.
def _std_stages(
    stem: str | None, body: str, last: str, hops_last: int = 0, first: int = 1
) -> list[tuple[str, int, str, int]]:
    rules = [("stem", 2, stem, 0)] if stem else []
    rules += [(f"stage{k}", 2 ** (k + 1), body, 0) for k in range(first, 4)]
    rules.append(("stage4", 32, last, hops_last))
    return rules


def _alpha_tag(alpha: float, size: int) -> str:
    """Variant tag: `a025_224` is width multiplier 0.25 at 224 px."""
    return f"a{round(alpha * 100):03d}_{size}"


# keras-applications README: top-1/top-5 error at 224 px, as accuracies.
_MOBILENET_TOP = {
    (a, 224): (1 - e1 / 100, 1 - e5 / 100)
    for a, e1, e5 in (
        (1.0, 29.576, 10.496),
        (0.75, 31.588, 11.758),
        (0.5, 35.708, 14.376),
        (0.25, 48.418, 24.208),
    )
}
_MOBILENET_V2_TOP = {
    (a, 224): (1 - e1 / 100, 1 - e5 / 100)
    for a, e1, e5 in (
        (1.0, 28.664, 9.858),
        (0.35, 39.914, 17.568),
        (0.5, 34.806, 13.938),
        (0.75, 30.468, 10.824),
        (1.3, 25.320, 7.878),
        (1.4, 24.770, 7.578),
    )
}

# keras.applications.mobilenet_v3 docstring: top-1 of each published checkpoint.
_MOBILENET_V3 = (
    ("Large", "a100", 1.0, False, 0.756),
    ("Large", "a075", 0.75, False, 0.733),
    ("Large", "minimalistic", 1.0, True, 0.723),
    ("Small", "a100", 1.0, False, 0.681),
    ("Small", "a075", 0.75, False, 0.654),
    ("Small", "minimalistic", 1.0, True, 0.619),
)


def _m(arch: str, ctor: str, top: tuple[float, float] | None = None, **extra: Any) -> dict:
    return {"arch": arch, "constructor": ctor, "top": top, **extra}


FAMILIES: dict[str, dict[str, Any]] = {
    "resnet": {
        "module": "resnet",
        "pre": CAFFE,
        "license": "MIT",
        "stages": _std_stages(r"^conv1_relu$", r"^conv\d_block\d+_out$", r"^conv5_block\d+_out$"),
        "models": [
            _m("resnet50", "ResNet50", (0.749, 0.921)),
            _m("resnet101", "ResNet101", (0.764, 0.928)),
            _m("resnet152", "ResNet152", (0.766, 0.931)),
        ],
    },
    "resnet_v2": {
        "module": "resnet_v2",
        "pre": TF,
        "license": "Apache-2.0",
        "stages": _std_stages(r"^conv1_conv$", r"^conv\d_block\d+_out$", r"^post_relu$"),
        "models": [
            _m("resnet50_v2", "ResNet50V2", (0.760, 0.930)),
            _m("resnet101_v2", "ResNet101V2", (0.772, 0.938)),
            _m("resnet152_v2", "ResNet152V2", (0.780, 0.942)),
        ],
    },
    "vgg": {
        "module": None,
        "pre": CAFFE,
        "license": "CC-BY-4.0",
        "stages": _std_stages(r"^block1_pool$", r"^block\d_pool$", r"^block5_pool$"),
        "models": [
            _m("vgg16", "VGG16", (0.713, 0.901), module="vgg16"),
            _m("vgg19", "VGG19", (0.713, 0.900), module="vgg19"),
        ],
    },
    "xception": {
        "module": "xception",
        "pre": TF,
        "license": "MIT",
        "stages": [
            ("stem", 2, r"^block1_conv2_act$", 0),
            ("stage1", 4, r"^block3_sepconv1_act$", 0),
            ("stage2", 8, r"^block4_sepconv1_act$", 0),
            ("stage3", 16, r"^block13_sepconv1_act$", 0),
            ("stage4", 32, r"^block14_sepconv2_act$", 0),
        ],
        "models": [_m("xception", "Xception", (0.790, 0.945))],
    },
    "inception_v3": {
        "module": "inception_v3",
        "pre": TF,
        "license": "MIT",
        "stages": _std_stages(None, r"^mixed\d+$", r"^mixed\d+$", first=2),
        "models": [_m("inception_v3", "InceptionV3", (0.779, 0.937))],
    },
    "inception_resnet_v2": {
        "module": "inception_resnet_v2",
        "pre": TF,
        "license": "Apache-2.0",
        "stages": [
            ("stage2", 8, r"^block35_\d+_ac$", 0),
            ("stage3", 16, r"^block17_\d+_ac$", 0),
            ("stage4", 32, r"^conv_7b_ac$", 0),
        ],
        "models": [_m("inception_resnet_v2", "InceptionResNetV2", (0.803, 0.953))],
    },
    "densenet": {
        "module": "densenet",
        "pre": TORCH,
        "license": "BSD-3-Clause",
        "stages": _std_stages(r"^conv1_relu$", r"^pool\d_relu$", r"^relu$"),
        "models": [
            _m("densenet121", "DenseNet121", (0.750, 0.923)),
            _m("densenet169", "DenseNet169", (0.762, 0.932)),
            _m("densenet201", "DenseNet201", (0.773, 0.936)),
        ],
    },
    "nasnet": {
        "module": "nasnet",
        "pre": TF,
        "license": "Apache-2.0",
        "stages": [
            ("stem", 2, r"^stem_bn1$", 0),
            ("stage1", 4, r"^reduction_concat_stem_1$", 0),
            ("stage2", 8, r"^normal_concat_\d+$", 0),
            ("stage3", 16, r"^normal_concat_\d+$", 0),
            ("stage4", 32, r"^normal_concat_\d+$", 1),
        ],
        "models": [
            _m("nasnet_mobile", "NASNetMobile", (0.744, 0.919)),
            _m("nasnet_large", "NASNetLarge", (0.825, 0.960)),
        ],
    },
    "mobilenet": {
        "module": "mobilenet",
        "pre": TF,
        "license": "Apache-2.0",
        "accuracy_source": KERAS_APPS_README,
        "stages": _std_stages(r"^conv_pw_\d+_relu$", r"^conv_pw_\d+_relu$", r"^conv_pw_13_relu$"),
        "models": [
            _m(
                "mobilenet",
                "MobileNet",
                _MOBILENET_TOP.get((a, r)),
                tag=_alpha_tag(a, r),
                kwargs={"alpha": a},
                size=r,
            )
            for a in (1.0, 0.75, 0.5, 0.25)
            for r in (224, 192, 160, 128)
        ],
    },
    "mobilenet_v2": {
        "module": "mobilenet_v2",
        "pre": TF,
        "license": "Apache-2.0",
        "accuracy_source": KERAS_APPS_README,
        "stages": _std_stages(r"^expanded_conv_project_BN$", r"^block_\d+_add$", r"^out_relu$"),
        "models": [
            _m(
                "mobilenet_v2",
                "MobileNetV2",
                _MOBILENET_V2_TOP.get((a, r)),
                tag=_alpha_tag(a, r),
                kwargs={"alpha": a},
                size=r,
            )
            for a in (1.0, 0.35, 0.5, 0.75, 1.3, 1.4)
            for r in (224, 192, 160, 128, 96)
        ],
    },
    "mobilenet_v3": {
        "module": "mobilenet_v3",
        "pre": BUILTIN_TF,
        "license": "Apache-2.0",
        "stages": [
            ("stem", 2, r"^conv_bn$", 1),
            *[
                (f"stage{k}", 2 ** (k + 1), r"^expanded_conv(_\d+)?_(add|project_bn)$", 0)
                for k in (1, 2, 3)
            ],
            ("stage4", 32, r"^conv_1_bn$", 1),
        ],
        "models": [
            _m(
                f"mobilenet_v3_{size.lower()}",
                f"MobileNetV3{size}",
                (top1, None),
                tag=tag,
                kwargs={"alpha": alpha, "minimalistic": minimal},
            )
            for size, tag, alpha, minimal, top1 in _MOBILENET_V3
        ],
        "accuracy_source": MOBILENET_V3_DOC,
        "size": 224,
    },
    "efficientnet": {
        "module": "efficientnet",
        "pre": BUILTIN_TORCH,
        "license": "Apache-2.0",
        "stages": _std_stages(
            r"^block\d[a-z]_(add|project_bn)$",
            r"^block\d[a-z]_(add|project_bn)$",
            r"^top_activation$",
        ),
        "models": [
            _m(f"efficientnet_b{i}", f"EfficientNetB{i}", t)
            for i, t in enumerate(
                [
                    (0.771, 0.933),
                    (0.791, 0.944),
                    (0.801, 0.949),
                    (0.816, 0.957),
                    (0.829, 0.964),
                    (0.836, 0.967),
                    (0.840, 0.968),
                    (0.843, 0.970),
                ]
            )
        ],
    },
    "efficientnet_v2": {
        "module": "efficientnet_v2",
        "pre": BUILTIN_TORCH,
        "license": "Apache-2.0",
        "stages": _std_stages(
            r"^block\d[a-z]_(add|project_bn|project_activation)$",
            r"^block\d[a-z]_(add|project_bn|project_activation)$",
            r"^top_activation$",
        ),
        "models": [
            *[
                _m(f"efficientnet_v2_b{i}", f"EfficientNetV2B{i}", t)
                for i, t in enumerate(
                    [(0.787, 0.943), (0.798, 0.950), (0.805, 0.951), (0.820, 0.958)]
                )
            ],
            _m("efficientnet_v2_s", "EfficientNetV2S", (0.839, 0.967), pre=BUILTIN_128),
            _m("efficientnet_v2_m", "EfficientNetV2M", (0.853, 0.974), pre=BUILTIN_128),
            _m("efficientnet_v2_l", "EfficientNetV2L", (0.857, 0.975), pre=BUILTIN_128),
        ],
    },
    "convnext": {
        "module": "convnext",
        "pre": BUILTIN_TORCH,
        "license": "MIT",
        "stages": [
            ("stem", 4, r"_stem$", 0),
            *[
                (f"stage{k + 1}", 2 ** (k + 2), rf"_stage_{k}_block_\d+_identity$", 1)
                for k in range(4)
            ],
        ],
        "models": [
            _m(f"convnext_{s.lower()}", f"ConvNeXt{s}", (t, None))
            for s, t in (
                ("Tiny", 0.813),
                ("Small", 0.823),
                ("Base", 0.853),
                ("Large", 0.863),
                ("XLarge", 0.867),
            )
        ],
    },
}


def _stride(input_size: int, h: int) -> int:
    return 2 ** round(math.log2(input_size / h))


def _pick(model: Any, stable: set[str], rule: tuple[str, int, str, int], size: int) -> dict:
    from zoo_transfer.recipes import resolve_tap

    name, stride, pattern, hops = rule
    best = None
    for layer in model.layers:
        shape = layer.output.shape
        if len(shape) != 4 or not re.search(pattern, layer.name):
            continue
        if _stride(size, shape[1]) == stride and layer.name in stable:
            best = layer.name
    if best is None:
        raise RuntimeError(f"{model.name}: no stable layer matches {pattern!r} at stride {stride}")
    ref = f"{best}+{hops}" if hops else best
    shape = tuple(int(d) for d in resolve_tap(model, ref).shape[1:])
    if _stride(size, shape[0]) != stride:
        raise RuntimeError(
            f"{model.name}: {ref} has stride {_stride(size, shape[0])}, not {stride}"
        )
    return {"name": name, "layer": ref, "stride": stride, "shape": list(shape)}


def card_for(family: str, spec: dict, m: dict) -> dict:
    import keras

    from zoo_transfer.recipes.probe import imagenet_build

    size = m.get("size") or spec.get("size")
    pseudo = SimpleNamespace(
        kwargs=m.get("kwargs", {}), constructor=m["constructor"], name=m["arch"], input_size=None
    )
    keras.backend.clear_session()
    shape = (size, size, 3) if size else None
    top, rec_top = imagenet_build(pseudo, include_top=True, input_shape=shape)
    size = size or rec_top.default_size
    if shape is None:
        shape = (size, size, 3)
    again, _ = imagenet_build(pseudo, include_top=True, input_shape=shape)
    stable = {layer.name for layer in top.layers} & {layer.name for layer in again.layers}
    no_top, rec_no_top = imagenet_build(pseudo, include_top=False, input_shape=shape)
    stages = [_pick(top, stable, r, size) for r in spec["stages"]]
    no_top_names = {layer.name for layer in no_top.layers}
    head = [
        layer.name
        for layer in top.layers
        if layer.name not in no_top_names and layer.name in stable
    ]
    (w_top,), (w_no_top,) = rec_top.downloads, rec_no_top.downloads
    top_acc = m.get("top")
    card = {
        "arch": m["arch"],
        "tag": m.get("tag", "imagenet"),
        "constructor": m["constructor"],
        "aliases": [m["constructor"]],
        "kwargs": m.get("kwargs", {}),
        "input_size": list(shape),
        "min_input_size": [rec_top.min_size or 32, rec_top.min_size or 32, 3],
        "stages": stages,
        "feature_layer": stages[-1]["layer"],
        "head_layers": head,
        "params": int(top.count_params()),
        "params_no_top": int(no_top.count_params()),
        "weights_top": w_top,
        "weights_no_top": w_no_top,
        "top1": top_acc[0] if top_acc else None,
        "top5": top_acc[1] if top_acc else None,
    }
    if "module" in m:
        card["preprocess_module"] = m["module"]
    if "pre" in m:
        card["preprocessing"] = dict(m["pre"], interpolation="bilinear", crop_pct=0.875)
    return {k: v for k, v in card.items() if v is not None}


def _format(obj: Any) -> str:
    text = json.dumps(obj, indent=2)
    # keep short number lists and stage objects on one line, for readable diffs
    text = re.sub(
        r"\[\s+([-0-9.e,\s]+?)\s+\]",
        lambda mt: "[" + ", ".join(x.strip() for x in mt.group(1).split(",")) + "]",
        text,
    )
    text = re.sub(
        r"\[\s+(\"[^\[\]{}]*?\")\s+\]",
        lambda mt: "[" + re.sub(r",\s*\n\s*", ", ", mt.group(1)) + "]",
        text,
    )
    text = re.sub(
        r"\{\s+(\"name\": [^{}]*?)\s+\}",
        lambda mt: "{" + re.sub(r"\s*\n\s*", " ", mt.group(1)) + "}",
        text,
    )
    return text + "\n"


def generate(family: str, out_dir: Path) -> Path:
    spec = FAMILIES[family]
    cards = []
    for m in spec["models"]:
        card = card_for(family, spec, m)
        print(
            f"  {card['arch']}.{card.get('tag', 'imagenet')}: {len(card['stages'])} stages, "
            f"{card['params']:,} params",
            flush=True,
        )
        cards.append(card)
    # family-wide fields go to defaults; the first card keeps its alias only once
    seen: set[str] = set()
    for card in cards:
        if card["arch"] in seen:
            card.pop("aliases")
        seen.add(card["arch"])
    defaults: dict[str, Any] = {
        "license": spec["license"],
        "preprocessing": dict(spec["pre"], interpolation="bilinear", crop_pct=0.875),
    }
    if spec["module"]:
        defaults["preprocess_module"] = spec["module"]
    if any("top1" in card for card in cards):
        defaults["accuracy_source"] = spec.get("accuracy_source", KERAS_IO)
    for card in cards:
        if card.get("preprocessing") == defaults["preprocessing"]:
            card.pop("preprocessing")
    path = out_dir / f"{family}.json"
    path.write_text(_format({"family": family, "defaults": defaults, "cards": cards}))
    return path


def main(argv: list[str]) -> None:
    out_dir = Path(__file__).resolve().parents[1] / "registry" / "cards"
    for family in argv or list(FAMILIES):
        print(f"{family}:", flush=True)
        print("  wrote", generate(family, out_dir))


if __name__ == "__main__":
    main(sys.argv[1:])
