"""Write the registry's keras-hub cards (`registry/cards/hub_*.json`) from installed keras-hub.

For each preset below, the upstream configuration (the Hugging Face `config.json` or
timm `pretrained_cfg` that keras-hub converted the preset from) goes through
keras-hub's own converter (`keras_hub.src.utils.{transformers,timm}.convert_*`) to the
backbone config; the backbone is built with random weights, its stages, shapes and
parameter count are read (`zoo_transfer.recipes._hub_cards.hub_card_dict`), and the
count must equal the one keras-hub publishes for the preset, which checks the config.
The image converter's scale and offset are computed as keras-hub's conversion does
(`scale = 1/255/std`, `offset = -mean/std`).

On a connected machine, `--check-presets DIR` compares each card with the real preset's
`config.json` and `image_converter.json` under DIR/<preset> (from `zoo-transfer fetch`).

    python scripts/make_hub_cards.py            # writes registry/cards/hub_*.json
    python scripts/make_hub_cards.py --check    # exits 1 when a card file is stale
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
HALF = [0.5, 0.5, 0.5]
ROOT = Path(__file__).resolve().parent.parent


def _dinov2(hidden: int, heads: int, registers: int = 0) -> dict:
    """facebook/dinov2-* (and -with-registers-*) config.json on Hugging Face."""
    return {
        "model_type": "dinov2_with_registers" if registers else "dinov2",
        "hidden_size": hidden,
        "num_hidden_layers": 12,
        "num_attention_heads": heads,
        "mlp_ratio": 4,
        "patch_size": 14,
        "image_size": 518,
        "layerscale_value": 1.0,
        "use_swiglu_ffn": False,
        "hidden_dropout_prob": 0.0,
        "drop_path_rate": 0.0,
        "num_register_tokens": registers,
    }


def _vit_hf(hidden: int, heads: int, mlp: int, *, deit: bool = False) -> dict:
    """google/vit-* and facebook/deit-* config.json on Hugging Face (patch 16, 224 px)."""
    return {
        "image_size": 224,
        "patch_size": 16,
        "num_hidden_layers": 12,
        "num_attention_heads": heads,
        "hidden_size": hidden,
        "intermediate_size": mlp,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "qkv_bias": True,
        "layer_norm_eps": 1e-12 if deit else 1e-6,
    }


def _clip(patch: int, hidden: int, layers: int, heads: int, mlp: int, text: dict) -> dict:
    """openai/clip-vit-* config.json on Hugging Face: the vision and text towers."""
    vision = {"patch_size": patch, "hidden_size": hidden, "num_hidden_layers": layers,
              "num_attention_heads": heads, "intermediate_size": mlp, "hidden_act": "quick_gelu",
              "image_size": 224}  # fmt: skip
    return {"vision": vision, "text": text, "projection_dim": 512}


CLIP_TEXT_B = {"vocab_size": 49408, "hidden_size": 512, "num_hidden_layers": 12,
               "num_attention_heads": 8, "intermediate_size": 2048, "hidden_act": "quick_gelu",
               "max_position_embeddings": 77}  # fmt: skip
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]


class _ImageTower:
    """The image tower of a two-tower keras-hub model (`whole`: the `vision` and `text`
    encoders), configured as keras-hub's conversion script for the family does (its
    tools/checkpoint_conversion/convert_*_checkpoints.py)."""

    whole = vision = text = ""  # keras_hub.models class names

    @property
    def backbone_cls(self):
        import keras_hub

        return getattr(keras_hub.models, self.vision)

    def convert_backbone_config(self, upstream: dict) -> dict:
        raise NotImplementedError

    def text_config(self, upstream: dict) -> dict:
        raise NotImplementedError

    def whole_kwargs(self, upstream: dict) -> dict:
        return {}

    def published_count(self, upstream: dict, tower) -> int:
        """The whole model's count (what keras-hub publishes for these presets): both
        towers and what joins them, built without initialising a weight."""
        import keras
        import keras_hub

        # initialising would cost seconds and gigabytes (SigLIP 2's 256k-token vocabulary);
        # the variables stay pending until the caller's `keras.backend.clear_session()`
        with keras.StatelessScope(initialize_variables=False):
            text = getattr(keras_hub.models, self.text)(**self.text_config(upstream))
            vision = self.backbone_cls(**self.convert_backbone_config(upstream))
            full = getattr(keras_hub.models, self.whole)(
                vision, text, **self.whole_kwargs(upstream)
            )
        return full.count_params()


def _hf_encoder(c: dict) -> dict:
    """The keys every keras-hub CLIP/SigLIP encoder takes, from a Hugging Face tower config."""
    return {
        "hidden_dim": c["hidden_size"], "num_layers": c["num_hidden_layers"],
        "num_heads": c["num_attention_heads"], "intermediate_dim": c["intermediate_size"],
        "intermediate_activation": _gelu(c["hidden_act"]),
    }  # fmt: skip


def _gelu(name: str) -> str:
    """keras-hub's name for a Hugging Face activation (SigLIP's conversion renames one)."""
    return "gelu_approximate" if name == "gelu_pytorch_tanh" else name


class _ClipTower(_ImageTower):
    """CLIP's image tower (keras-hub's convert_clip_checkpoints.py)."""

    whole, vision, text = "CLIPBackbone", "CLIPVisionEncoder", "CLIPTextEncoder"

    def convert_backbone_config(self, upstream: dict) -> dict:
        v = upstream["vision"]
        size = v["image_size"]
        return {**_hf_encoder(v), "patch_size": v["patch_size"], "image_shape": (size, size, 3)}

    def text_config(self, upstream: dict) -> dict:
        t = upstream["text"]
        return {
            **_hf_encoder(t), "vocabulary_size": t["vocab_size"],
            "embedding_dim": t["hidden_size"], "max_sequence_length": t["max_position_embeddings"],
        }  # fmt: skip

    def whole_kwargs(self, upstream: dict) -> dict:
        return {"projection_dim": upstream["projection_dim"]}


class _SigLIPTower(_ImageTower):
    """SigLIP's image tower (keras-hub's convert_siglip_checkpoints.py)."""

    whole, vision, text = "SigLIPBackbone", "SigLIPVisionEncoder", "SigLIPTextEncoder"

    def convert_backbone_config(self, upstream: dict) -> dict:
        v = upstream["vision"]
        size = v["image_size"]
        return {
            **_hf_encoder(v), "patch_size": v["patch_size"],
            "layer_norm_epsilon": v["layer_norm_eps"], "image_shape": (size, size, 3),
        }  # fmt: skip

    def text_config(self, upstream: dict) -> dict:
        t = upstream["text"]
        return {
            **_hf_encoder(t), "vocabulary_size": t["vocab_size"],
            "embedding_dim": t["hidden_size"], "layer_norm_epsilon": t["layer_norm_eps"],
            "max_sequence_length": t["max_position_embeddings"],
            "projection_dim": t.get("projection_size"),
        }  # fmt: skip


def _siglip(vocab: int) -> dict:
    """google/siglip-base-patch16-224 and google/siglip2-base-patch16-224 config.json on
    Hugging Face: the same base towers (ViT-B/16 at 224 px, a 64-token text encoder);
    SigLIP 2's text vocabulary is Gemma's (256k), SigLIP's 32k."""
    tower = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
             "intermediate_size": 3072, "hidden_act": "gelu_pytorch_tanh",
             "layer_norm_eps": 1e-6}  # fmt: skip
    vision = {**tower, "patch_size": 16, "image_size": 224}
    text = {**tower, "vocab_size": vocab, "max_position_embeddings": 64}
    return {"vision": vision, "text": text}


def _timm(architecture: str) -> dict:
    """timm's pretrained_cfg for `<architecture>.a1_in1k` (the weights keras-hub ported)."""
    return {"architecture": architecture}


# preset -> (arch, tag, aliases, converter module, upstream config, converter facts, licence)
PRESETS = {
    "dinov2_small": ("dinov2_small", "lvd142m", (), "transformers.convert_dinov2",
                     _dinov2(384, 6), (518, IMAGENET_MEAN, IMAGENET_STD, "bicubic"), "Apache-2.0"),
    "dinov2_base": ("dinov2_base", "lvd142m", (), "transformers.convert_dinov2",
                    _dinov2(768, 12), (518, IMAGENET_MEAN, IMAGENET_STD, "bicubic"), "Apache-2.0"),
    "dinov2_with_registers_small": (
        "dinov2_reg_small", "lvd142m", ("dinov2_with_registers_small",),
        "transformers.convert_dinov2", _dinov2(384, 6, registers=4),
        (518, IMAGENET_MEAN, IMAGENET_STD, "bicubic"), "Apache-2.0"),
    "vit_base_patch16_224_imagenet": (
        "vit_base_patch16_224", "imagenet", (), "transformers.convert_vit",
        _vit_hf(768, 12, 3072), (224, HALF, HALF, "bilinear"), "Apache-2.0"),
    "vit_base_patch16_224_imagenet21k": (
        "vit_base_patch16_224", "imagenet21k", (), "transformers.convert_vit",
        _vit_hf(768, 12, 3072), (224, HALF, HALF, "bilinear"), "Apache-2.0"),
    "deit_tiny_distilled_patch16_224_imagenet": (
        "deit_tiny_distilled_patch16_224", "imagenet", ("deit_tiny",), "transformers.convert_deit",
        _vit_hf(192, 3, 768, deit=True), (224, IMAGENET_MEAN, IMAGENET_STD, "bicubic"),
        "Apache-2.0"),
    "deit_small_distilled_patch16_224_imagenet": (
        "deit_small_distilled_patch16_224", "imagenet", ("deit_small",),
        "transformers.convert_deit", _vit_hf(384, 6, 1536, deit=True),
        (224, IMAGENET_MEAN, IMAGENET_STD, "bicubic"), "Apache-2.0"),
    "resnet_18_imagenet": ("hub_resnet18", "imagenet", ("resnet_18_imagenet",),
                           "timm.convert_resnet", _timm("resnet18"),
                           (224, IMAGENET_MEAN, IMAGENET_STD, "bicubic"), "Apache-2.0"),
    "resnet_50_imagenet": ("hub_resnet50", "imagenet", ("resnet_50_imagenet",),
                           "timm.convert_resnet", _timm("resnet50"),
                           (224, IMAGENET_MEAN, IMAGENET_STD, "bicubic"), "Apache-2.0"),
    "efficientnet_b0_ra_imagenet": (
        "hub_efficientnet_b0", "ra_imagenet", ("efficientnet_b0_ra_imagenet",),
        "timm.convert_efficientnet", _timm("efficientnet_b0"),
        (224, IMAGENET_MEAN, IMAGENET_STD, "bicubic"), "Apache-2.0"),
    "mobilenet_v3_small_100_imagenet": (
        "hub_mobilenet_v3_small_100", "imagenet", ("mobilenet_v3_small_100_imagenet",),
        "timm.convert_mobilenet", _timm("mobilenetv3_small_100"),
        (224, IMAGENET_MEAN, IMAGENET_STD, "bicubic"), "Apache-2.0"),
    "mobilenet_v3_large_100_imagenet": (
        "hub_mobilenet_v3_large_100", "imagenet", ("mobilenet_v3_large_100_imagenet",),
        "timm.convert_mobilenet", _timm("mobilenetv3_large_100"),
        (224, IMAGENET_MEAN, IMAGENET_STD, "bicubic"), "Apache-2.0"),
    "clip_vit_base_patch32": (
        "clip_vit_base_patch32", "openai", (), "clip",
        _clip(32, 768, 12, 12, 3072, CLIP_TEXT_B), (224, CLIP_MEAN, CLIP_STD, "bicubic"), "MIT"),
    "clip_vit_base_patch16": (
        "clip_vit_base_patch16", "openai", (), "clip",
        _clip(16, 768, 12, 12, 3072, CLIP_TEXT_B), (224, CLIP_MEAN, CLIP_STD, "bicubic"), "MIT"),
    # keras-hub's SigLIP conversion writes a bicubic, antialiased converter for every preset
    "siglip_base_patch16_224": (
        "siglip_base_patch16_224", "webli", (), "siglip", _siglip(32000),
        (224, HALF, HALF, "bicubic"), "Apache-2.0"),
    "siglip2_base_patch16_224": (
        "siglip2_base_patch16_224", "webli", (), "siglip", _siglip(256000),
        (224, HALF, HALF, "bicubic"), "Apache-2.0"),
}  # fmt: skip
# presets whose image model is one tower of the backbone
TOWERS = {"clip": _ClipTower(), "siglip": _SigLIPTower()}


def converter_facts(size: int, mean: list, std: list, interpolation: str) -> dict:
    """The image converter's config as keras-hub's conversion writes it."""
    return {
        "image_size": [size, size],
        "scale": [1.0 / 255.0 / s for s in std],
        "offset": [-m / s for m, s in zip(mean, std, strict=True)],
        "interpolation": interpolation,
    }


def make_card(preset: str, backbone: object | None = None) -> dict:
    """The card dict for `preset`, its parameter count checked against keras-hub's.

    `backbone`: an already built backbone to read (the tests pass theirs); its config
    must be the one keras-hub's converter makes from the upstream config.
    """
    import keras
    import keras_hub

    from zoo_transfer.recipes._hub_cards import auto_name, hub_card_dict

    arch, tag, aliases, module, upstream, facts, licence = PRESETS[preset]
    converter = TOWERS.get(module) or importlib.import_module(f"keras_hub.src.utils.{module}")
    config = converter.convert_backbone_config(upstream)
    if backbone is None:  # named as keras-hub names it when it saves the preset; only the
        # structure is read, so no weight is initialised (until keras.backend.clear_session)
        with keras.StatelessScope(initialize_variables=False):
            name = auto_name(converter.backbone_cls.__name__)
            backbone = converter.backbone_cls(**config, name=name)
    else:
        built = json.loads(json.dumps(backbone.get_config()))
        for key, value in json.loads(json.dumps(config)).items():
            if built.get(key) not in (value, [value, value]):  # (16, 16) is written 16
                raise SystemExit(f"{preset}: the backbone given has {key}={built.get(key)!r}")
    info = keras_hub.models.Backbone.presets[preset]
    published = int(info["metadata"]["params"])
    counted = published_count(converter, upstream, backbone)
    if published not in counted.values():
        raise SystemExit(
            f"{preset}: the config gives {counted} parameters, keras-hub publishes "
            f"{published:,}. Fix the upstream config in PRESETS."
        )
    return hub_card_dict(
        backbone,
        converter_facts(*facts),
        arch=arch,
        tag=tag,
        preset=info["kaggle_handle"],
        license=licence,
        aliases=aliases,
    )


def published_count(converter: object, upstream: dict, backbone: object) -> dict[str, int]:
    """What keras-hub's published count may be: the backbone's own; with the ImageNet
    classifier on the pooled features (keras-hub counts it for some timm presets); or,
    for an image tower, the whole model's."""
    if hasattr(converter, "published_count"):
        return {"whole model": converter.published_count(upstream, backbone)}
    import keras
    import numpy as np

    own = backbone.count_params()
    learned = sum(int(np.prod(v.shape)) for v in backbone.trainable_weights)
    classifier = int(keras.tree.flatten(backbone.output)[0].shape[-1]) * 1000 + 1000
    return {
        "backbone": own,
        "with the 1000-class classifier": own + classifier,
        # timm's count: BatchNorm statistics are buffers there, not parameters
        "as timm counts it, with the classifier": learned + classifier,
    }


def family_files() -> dict[str, dict]:
    """`{file name: family file}` for every preset, grouped by family."""
    import keras

    files: dict[str, dict] = {}
    for preset in PRESETS:
        card = make_card(preset)
        keras.backend.clear_session()
        family = card.pop("family")
        name = f"{family}.json"
        files.setdefault(name, {"family": family, "cards": []})["cards"].append(card)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "registry" / "cards")
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    stale = []
    for name, data in family_files().items():
        text = json.dumps(data, indent=1) + "\n"
        path = args.out / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
            continue
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path} ({len(data['cards'])} cards)")
    if stale:
        print("stale: " + ", ".join(stale) + " (run scripts/make_hub_cards.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
