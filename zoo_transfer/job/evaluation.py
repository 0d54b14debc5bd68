"""The end of a run: the final model measured on the validation images, and the report.

`_confusion` gives the confusion matrix, the misclassified images (interleaved over
the true classes) and the accuracy without and with each test-time augmentation;
`_write_report` writes them to `metrics.json` and `report.html` with the curves, and
`_tta_note` says there whether `--tta` helps on this data. Kept apart from the run's
orchestration (`zoo_transfer.job.runner`), which calls it once, on the chief, after
`final.keras` is saved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo_transfer.input_spec import DEFAULT_CROP_FRACTION, InputSpec
from zoo_transfer.job.config import JobConfig, read_rank_json
from zoo_transfer.job.model import model_card
from zoo_transfer.job.outfolder import _write_json


def _write_report(
    out: Path,
    model: Any,
    splits: Any,
    class_names: list[str],
    history: dict[str, list],
    events: list[dict[str, Any]],
    config: JobConfig,
    recipe: str,
    spec: InputSpec,
    probe: dict[str, Any] | None = None,
    wise_ft: dict[str, Any] | None = None,
    domain: dict[str, Any] | None = None,
) -> None:
    from zoo_transfer.report import write_report

    confusion, mistakes, metrics = None, [], {}
    if splits.val is not None:
        confusion, mistakes, metrics = _confusion(
            model, splits.val, class_names, spec.crop_fraction
        )
        if wise_ft is not None:
            metrics["wise_ft"] = wise_ft
        _write_json(out / "metrics.json", metrics)
    notes = _tta_note(metrics)
    if domain is not None:
        notes.append(f"Domain: {domain['reason']}")
        if "situation" in domain:
            notes.append(f"Recipe {recipe}: {domain['situation']['reason']}")
    if config.adabn:
        notes.append(
            "AdaBN (--adabn): every BatchNorm layer's moving mean and variance were "
            "re-estimated on the training images before the linear probe."
        )
    if config.l2_sp:
        notes.append(
            f"L2-SP (--l2-sp {config.l2_sp:g}): the fine-tuning pulled every pretrained "
            "weight toward its pretrained value."
        )
    if wise_ft is not None:
        notes.append(wise_ft_note(wise_ft))
    choice = None
    if config.rank:
        choice = {**read_rank_json(config.rank), "trained": model_card(config.model).name}
    resolved = {**config.to_json(), "resolved_recipe": recipe, "skipped_files": splits.skipped}
    if domain is not None:
        resolved["domain"] = domain
    write_report(
        out,
        history=history,
        events=events,
        confusion=confusion,
        class_names=class_names,
        misclassified=mistakes,
        config=resolved,
        probe=probe,
        notes=notes,
        model_choice=choice,
    )


def wise_ft_note(record: dict[str, Any]) -> str:
    """The report's line on WiSE-FT (`--wise-ft`), from what `metrics.json` records."""
    alpha = record["alpha"]
    line = (
        f"WiSE-FT ({record['chosen_by']}): final.keras holds {1 - alpha:g} x the linear probe's "
        f"weights + {alpha:g} x the fine-tuned ones ({record['fine_tuned']}), alpha {alpha:g}"
    )
    tried = list(zip(record.get("alphas", []), record.get("val_accuracies", []), strict=True))
    if len(tried) > 1:
        shown = ", ".join(f"{a:g}: {acc:.4f}" for a, acc in tried)
        line += f"; val_accuracy by alpha: {shown}"
    elif tried:
        line += f"; val_accuracy {tried[0][1]:.4f}"
    return line + "."


def _tta_note(metrics: dict[str, Any]) -> list[str]:
    from zoo_transfer.predict import TTA_VIEWS

    plain = metrics.get("val_accuracy")
    tried = {n: metrics.get(f"val_accuracy_tta_{n}") for n in TTA_VIEWS if n != "none"}
    if plain is None or None in tried.values():
        return []
    best = max(tried, key=lambda n: (tried[n], -len(TTA_VIEWS[n])))
    verdict = (
        f"use --tta {best} for this data" if tried[best] > plain else "leave it off for this data"
    )
    shown = ", ".join(f"{n} {a:.4f} ({a - plain:+.4f})" for n, a in tried.items())
    return [
        f"Test-time augmentation (evaluate/predict --tta), val_accuracy {plain:.4f} without: "
        f"{shown}: {verdict}."
    ]


def _confusion(
    model: Any, val: Any, class_names: list[str], crop_fraction: float = DEFAULT_CROP_FRACTION
) -> tuple[Any, list, dict]:
    """Confusion matrix, misclassified images and accuracy on the validation split, and
    the accuracy of each test-time augmentation (`evaluate --tta`) on it."""
    import numpy as np

    from zoo_transfer.predict import TTA_VIEWS, tta_views

    n = len(class_names)
    matrix = np.zeros((n, n), dtype=np.int64)
    mistakes = []
    tried = {name: used for name, used in TTA_VIEWS.items() if name != "none"}
    tta_correct = dict.fromkeys(tried, 0)
    for images, labels in val:
        labels = np.asarray(labels)
        if labels.ndim == 2:
            labels = labels.argmax(-1)
        # views: the images, their centre crop, and the mirror images of both
        probs = [
            np.asarray(model.predict_on_batch(view))
            for view in tta_views(np.asarray(images), "flip+crop", crop_fraction)
        ]
        pred = probs[0].argmax(-1)
        for name, used in tried.items():
            tta_correct[name] += int(np.sum(sum(probs[i] for i in used).argmax(-1) == labels))
        np.add.at(matrix, (labels, pred), 1)
        for img, t, p in zip(np.asarray(images), labels, pred, strict=True):
            if t != p:
                mistakes.append(
                    (np.clip(img, 0, 255).astype("uint8"), class_names[t], class_names[p])
                )
    # every true class in turn, so the grid is not all from the first classes
    by_class: dict[str, list] = {}
    for item in mistakes:
        by_class.setdefault(item[1], []).append(item)
    mistakes = [
        group[i]
        for i in range(max(map(len, by_class.values()), default=0))
        for group in by_class.values()
        if i < len(group)
    ]
    total = int(matrix.sum())
    metrics = {
        "val_accuracy": float(np.trace(matrix) / total) if total else None,
        "val_images": total,
    }
    for name, correct in tta_correct.items():  # `evaluate --tta NAME`, measured
        metrics[f"val_accuracy_tta_{name}"] = float(correct / total) if total else None
    return matrix, mistakes, metrics
