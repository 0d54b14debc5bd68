"""One training run, start to end: `run` and the steps it orchestrates.

`run` checks and locks the out folder (`zoo_transfer.job.outfolder`), loads the data,
builds the recipe's model under the strategy (`zoo_transfer.job.distribution`), fits
the linear probe and then the epochs with the job's callbacks (seeding, progressive
resizing, gradual unfreezing, `best.keras`, `history.json` after every epoch, the
backups), chooses what `final.keras` holds, and writes the report
(`zoo_transfer.job.evaluation`). On failure it restores an earlier run it was replacing
and turns a write error into one `OutputWriteError`. Keras and TensorFlow are imported
inside the functions.

The forgetting guards (`zoo_transfer.guards`, L2-SP in `zoo_transfer.optimizers`) fit
in as steps: `--adabn` re-estimates BatchNorm statistics on the training images before
the probe, `--l2-sp` goes into the optimizer, and `--wise-ft` interpolates the last
epoch's weights toward the probe's (`probe.keras`) once the epochs are done; `final`
then does not apply (best.keras is still written).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from zoo_transfer.backup_folder import finished_epochs
from zoo_transfer.errors import (
    BuildArgumentError,
    LabelMismatchError,
    OutputWriteError,
    TrainingInterrupted,
)
from zoo_transfer.input_spec import DEFAULT_SIDE, InputSpec
from zoo_transfer.job.choices import decide_domain, situation
from zoo_transfer.job.config import (
    EMBEDDED_DATA,
    JobConfig,
    JobResult,
    progressive_schedule,
)
from zoo_transfer.job.distribution import (
    JaxStrategy,
    _is_chief,
    _multiworker_fixes,
    fit_scope,
    make_strategy,
)
from zoo_transfer.job.evaluation import _write_report
from zoo_transfer.job.guards import PROBE_MODEL, _adabn, _wise_ft
from zoo_transfer.job.interrupt import interrupt_guard
from zoo_transfer.job.model import model_card
from zoo_transfer.job.outfolder import (
    _ASIDE,
    MANIFEST,
    RUN_OUTPUTS,
    _lock,
    _unlock,
    _write_failure,
    _write_json,
    check_unlocked,
    drop_earlier_run,
    prepare_out,
    restore_earlier_run,
)


def _load_data(config: JobConfig, spec: InputSpec) -> Any:
    from zoo_transfer import data

    if config.data == EMBEDDED_DATA:
        from zoo_transfer.recipes.digitnet import demo_digits

        x_train, y_train, x_test, y_test, names = demo_digits(seed=config.seed, train_per_class=10)
        splits = data.load(
            (x_train, y_train),
            input_spec=spec,
            batch_size=config.batch_size,
            validation=(x_test, y_test),
            augment=config.augment,
            seed=config.seed,
        )
        splits.class_names = list(names)
        return splits
    return data.load(
        config.data,
        input_spec=spec,
        batch_size=config.batch_size,
        validation_split=None if config.validation else config.validation_split,
        validation=config.validation,
        augment=config.augment,
        seed=config.seed,
        drop_empty_classes=config.drop_empty_classes,
    )


def _split_evenly(splits: Any, devices: int, verbose: int) -> None:
    """DataParallel on JAX splits every batch over the devices: make each batch divide."""
    left = {}
    for name in ("train_images", "val_images"):
        source = getattr(splits, name)
        if source is not None and hasattr(source, "split_evenly"):
            left[name] = source.split_evenly(devices)
    if verbose and left.get("val_images"):
        print(
            f"validation during training leaves out {left['val_images']} image(s), so every "
            f"batch splits over the {devices} devices; the report scores every image"
        )


def _as_before(config: JobConfig, out: Path) -> JobConfig:
    """A resumed run keeps what its first run chose from the data (epochs, image size),
    unless the options say otherwise; `prepare_out` then compares the rest."""
    import dataclasses

    saved = out / "config.json"
    if not saved.is_file():
        return config  # prepare_out says there is nothing to resume
    before = JobConfig.from_json(json.loads(saved.read_text()))
    keep: dict[str, Any] = {}
    if config.epochs is None:
        keep["epochs"] = before.epochs
    if config.image_size is None and not config.progressive:
        keep["image_size"] = before.image_size
    if keep:
        chosen = {k: v for k, v in before.chosen.items() if k in keep}
        keep["chosen"] = {**config.chosen, **chosen}
    return dataclasses.replace(config, **keep)


def _side_from_data(config: JobConfig, native: int | None, verbose: int) -> JobConfig:
    """The training side from the images' own size, for a folder (`data_defaults`)."""
    import dataclasses

    from zoo_transfer.folders import typical_side
    from zoo_transfer.recipes import side_for

    data = config.data
    if data == EMBEDDED_DATA or not isinstance(data, str) or not os.path.isdir(data):
        return config  # the embedded digits, tfds: the card's size
    side, why = side_for(typical_side(data), native)
    if verbose:
        print(f"image size: {why}")
    return dataclasses.replace(config, image_size=side, chosen={**config.chosen, "image_size": why})


def _epochs_from_data(config: JobConfig, num_train: int, verbose: int) -> JobConfig:
    """The number of epochs from the number of training images (`data_defaults`)."""
    import dataclasses

    from zoo_transfer.recipes import epochs_for

    epochs, why = epochs_for(num_train)
    if verbose:
        print(f"epochs: {why}")
    return dataclasses.replace(config, epochs=epochs, chosen={**config.chosen, "epochs": why})


def _recipe_name(config: JobConfig, num_train: int) -> str:
    """The recipe to run: `auto` is LP-FT, whatever the data's size (see `recipes.lp_ft`)."""
    return "lp_ft" if config.recipe == "auto" else config.recipe.replace("-", "_")


def _events(
    history: dict[str, list], unfreeze: dict[int, str] | None = None
) -> list[dict[str, Any]]:
    """Unfreeze and resize events, read back from the per-epoch logs (0-based epochs).

    `unfreeze` (the schedule) names what was unfrozen; the logs only show the count.
    """
    unfreeze = unfreeze or {}
    events = []
    sizes, params = history.get("image_size", []), history.get("trainable_params", [])
    for e in range(1, len(sizes)):
        if sizes[e] != sizes[e - 1]:
            events.append(
                {"epoch": e, "kind": "resize", "detail": f"{sizes[e - 1]} -> {sizes[e]} px"}
            )
    for e in range(1, len(params)):
        if params[e] != params[e - 1]:
            what = f"{unfreeze[e]}: " if e in unfreeze else ""
            events.append(
                {"epoch": e, "kind": "unfreeze", "detail": f"{what}{params[e]:,} trainable params"}
            )
    return sorted(events, key=lambda d: d["epoch"])


def _history_callback(path: Path, start_records: list[dict[str, Any]]) -> Any:
    import keras

    class HistoryFile(keras.callbacks.Callback):
        """Write `history.json` after every epoch, so a kill loses nothing finished."""

        def __init__(self) -> None:
            super().__init__()
            self.records = list(start_records)

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            # numbered as Keras prints them ("Epoch 1/5"); a resumed run replaces the rest
            record = {"epoch": epoch + 1, **{k: _plain(v) for k, v in (logs or {}).items()}}
            self.records = self.records[:epoch] + [record]
            if _is_chief():
                _write_json(path, self.records)

    return HistoryFile()


def _drop_earlier_run_callback(out: Path) -> Any:
    import keras

    class DropEarlierRun(keras.callbacks.Callback):
        """Once the new run has finished an epoch, the run it replaces is deleted."""

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            drop_earlier_run(out)

    return DropEarlierRun()


def _from_zero(schedule: dict[int, str]) -> dict[int, str]:
    """A schedule counted from 1 (options, config.json) as Keras' 0-based epoch indices."""
    return {epoch - 1: what for epoch, what in schedule.items()}


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _as_lists(records: list[dict[str, Any]]) -> dict[str, list]:
    keys: list[str] = []
    for r in records:
        keys += [k for k in r if k != "epoch" and k not in keys]
    return {k: [r.get(k) for r in records] for k in keys}


def run(
    config: JobConfig,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    overwrite: bool = False,
    verbose: int = 1,
    report: bool = True,
    command: str | None = None,
) -> JobResult:
    """Train `config` into the out folder `out` (see the `zoo_transfer.job` docstring).

    Args:
        resume: continue the run in `out` from its last finished epoch.
        overwrite: replace an earlier zoo-transfer run in `out`.
        verbose: Keras' progress output (0, 1 or 2).
        report: write `report.html` and its PNGs at the end.
        command: the shell command that started the run, for the resume hint.

    Keras' global dtype policy is set to `config.precision` for the run and restored
    afterwards.
    """
    import keras

    previous = keras.config.dtype_policy()
    try:
        return _run(
            config,
            Path(out),
            resume=resume,
            overwrite=overwrite,
            verbose=verbose,
            report=report,
            command=command,
        )
    except BaseException as err:
        kept = ""
        if (Path(out) / _ASIDE).is_dir():  # failed before its first epoch: the earlier run stays
            restore_earlier_run(Path(out))
            kept = f" The earlier run in {out} is kept as it was."
            if isinstance(err, TrainingInterrupted):
                raise TrainingInterrupted(
                    f"Interrupted before the first epoch finished.{kept}", resume_command=""
                ) from None
        unwritable = _write_failure(err, Path(out))
        if unwritable:
            raise OutputWriteError(f"{unwritable}{kept}") from None
        raise
    finally:
        _unlock(Path(out))
        keras.config.set_dtype_policy(previous)


def check_out(
    config: JobConfig, out: str | os.PathLike, *, resume: bool = False, overwrite: bool = False
) -> None:
    """Refuse `out` as `run` would, without TensorFlow and without touching it.

    The out-folder rules (`--resume`, `--overwrite`, nothing to resume, a folder that is
    not a run) and a run already training there. `zoo-transfer train` calls it before it
    imports TensorFlow, so a refusal takes a second, not ten; `run` checks again (the
    folder may change in between), and takes the lock.

    ```python
    check_out(JobConfig("digitnet", "digits/", epochs=3), "runs/digits", resume=True)
    ```
    """
    out = Path(out)
    if not _is_chief():  # other workers write to a scratch folder
        return
    if resume:
        config = _as_before(config, out)
    prepare_out(out, config, resume=resume, overwrite=overwrite, dry=True)
    check_unlocked(out)


def _run(
    config: JobConfig,
    out: Path,
    *,
    resume: bool,
    overwrite: bool,
    verbose: int,
    report: bool,
    command: str | None,
) -> JobResult:
    import keras

    from zoo_transfer.backup import EpochBackup, restore_backup
    from zoo_transfer.callbacks import EpochSeeding, GradualUnfreezing, ProgressiveResizing
    from zoo_transfer.optimizers import transfer_optimizer
    from zoo_transfer.recipes import RECIPES
    from zoo_transfer.saving import best_model_checkpoint, save_for_inference

    chief = _is_chief()
    if resume:
        config = _as_before(config, out)
    if chief:  # other workers of a multi-worker run write to a scratch folder only
        prepare_out(out, config, resume=resume, overwrite=overwrite, dry=True)
        _lock(out)
    card = model_card(config.model)
    native = card.input_size[0] if card.input_size else None
    if config.image_size is None and not config.progressive and not resume:
        config = _side_from_data(config, native, verbose)
    sizes = config.progressive or [config.image_size or native or DEFAULT_SIDE]
    minimum = card.min_input_size[0] if card.min_input_size else 1
    # a transformer is built for one size: rebuilt for each size of --progressive
    by_stage = card.tokens is not None and len(set(sizes)) > 1
    if by_stage:
        _check_transformer_sizes(card, sizes, config)
    small = [s for s in sizes if s < minimum]
    if small:
        raise BuildArgumentError(
            f"Image size {small[0]} px is below {card.name}'s minimum input of {minimum} px. "
            f"Use --image-size/--progressive sizes of at least {minimum}."
        )

    strategy = make_strategy(config.strategy)
    if isinstance(strategy, JaxStrategy):
        strategy.check_batch_size(config.batch_size)
        if verbose and strategy.distribution is not None:
            print(
                f"strategy: keras.distribution.DataParallel over {strategy.num_replicas_in_sync} "
                f"devices ({strategy.devices[0].platform})"
            )
    keras.mixed_precision.set_dtype_policy(config.precision)
    keras.utils.set_random_seed(config.seed)

    spec = InputSpec.from_card(card, sizes[-1])  # how every image of the run is read
    splits = _load_data(config, spec)
    if isinstance(strategy, JaxStrategy) and strategy.distribution is not None:
        _split_evenly(splits, strategy.num_replicas_in_sync, verbose)
    class_names = list(splits.class_names)
    labels_path = out / "labels.json"
    if resume and labels_path.exists():
        before = json.loads(labels_path.read_text())
        if before != class_names:
            raise LabelMismatchError(
                f"The run in {out} was trained on {len(before)} classes {before[:5]}..., but "
                f"{config.data} now has {len(class_names)}: {class_names[:5]}.... Resume with "
                "the same data, or start a new run with another --out."
            )
    if len(class_names) < 2:
        raise BuildArgumentError(
            f"{config.data} has {len(class_names)} class; transfer learning needs at least 2."
        )
    if config.epochs is None:
        config = _epochs_from_data(config, splits.num_train, verbose)

    # the data loaded and matches: only now may an earlier run be replaced
    if chief:
        prepare_out(out, config, resume=resume, overwrite=overwrite)
    if chief:
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / MANIFEST, {"outputs": list(RUN_OUTPUTS)})
        _write_json(out / "config.json", config.to_json())
        _write_json(labels_path, class_names)
        work = out
    else:
        import tempfile

        work = Path(tempfile.mkdtemp(prefix="zoo-transfer-worker-"))

    recipe = _recipe_name(config, splits.num_train)
    weights = None if str(config.weights).lower() == "none" else config.weights
    domain = decide_domain(config, splits, weights)
    build_kwargs: dict[str, Any] = {}
    if recipe == "situation":
        chosen = situation(config, splits, weights, domain["similar"], sizes[-1])
        domain["situation"] = chosen
        recipe = chosen["recipe"]
        if chosen["cut"] is not None:
            build_kwargs["cut"] = chosen["cut"]
    if verbose:
        print(f"domain: {domain['reason']}")
        if "situation" in domain:
            print(f"recipe {recipe}: {domain['situation']['reason']}")
    shape = (None, None, 3) if len(set(sizes)) > 1 else (sizes[0], sizes[0], 3)
    schedule = progressive_schedule(sizes, config.epochs) if len(set(sizes)) > 1 else {}
    if by_stage:  # built for the size of the first epoch to run; a resumed run's backup
        done = finished_epochs(work / "backup") if resume else 0  # holds its last epoch's
        side = schedule[max(e for e in schedule if e <= max(done - 1, 0))]
        shape = (side, side, 3)
    with strategy.scope():
        model, plan = RECIPES[recipe](
            card.name,
            len(class_names),
            weights=weights,
            input_shape=shape,
            **build_kwargs,
        )
        loss = plan.loss
        if getattr(splits, "label_mode", "int") == "categorical":
            loss = "categorical_crossentropy"
        optimizer = transfer_optimizer(
            model,
            "adam",
            learning_rate=config.lr or plan.learning_rate,
            lr_mult=tuple(config.lr_mult) if config.lr_mult else plan.lr_mult,
            l2_sp=config.l2_sp,  # w0: the pretrained weights, before AdaBN and the probe
        )
        model.compile(optimizer, loss, metrics=["accuracy"])
    unfreeze = _from_zero(config.unfreeze) if config.unfreeze else dict(plan.unfreeze)

    initial_epoch = 0
    if resume:  # weights, optimizer and RNG state of the last good epoch
        with strategy.scope():
            initial_epoch = restore_backup(model, work / "backup")
    start_records: list[dict[str, Any]] = []
    history_path = out / "history.json"
    if resume and history_path.exists():
        start_records = json.loads(history_path.read_text())[:initial_epoch]
    history_cb = _history_callback(history_path, start_records)
    best_cb = None
    if config.adabn and initial_epoch == 0:  # a resumed run restored the adapted statistics
        _adabn(model, splits, verbose)
    stored = None  # the features `zoo-transfer rank` stored, for the probe
    if by_stage:  # the probe and the first epochs read images at the build's size
        for source in (splits.train_images, splits.val_images):
            if source is not None:
                source.set_size(shape[0])
    elif recipe == "lp_ft" and "cut" not in build_kwargs and initial_epoch == 0:
        stored = _stored_features(card.name, weights, splits, spec, verbose)
    probe = _probe(
        config, plan, model, splits, out, work, initial_epoch, chief, verbose, spec, stored
    )
    callbacks: list[Any] = [EpochSeeding(splits.train_images)]
    if len(set(sizes)) > 1:
        callbacks.append(
            ProgressiveResizing(
                schedule,
                splits.train_images,
                validation=splits.val_images,
                similar=domain["similar"] and weights is not None,
                verbose=verbose,
            )
        )
    if unfreeze:  # Keras callbacks get 0-based epoch indices
        callbacks.append(GradualUnfreezing(unfreeze, verbose=verbose))
    if splits.val is not None:
        # by stage, final.keras is at the last size: the best is chosen among its epochs
        since = max(schedule) if by_stage else 0
        earlier = [
            r["val_accuracy"] for r in start_records[since:] if r.get("val_accuracy") is not None
        ]
        if probe and probe.get("val_accuracy") is not None and not by_stage:
            earlier.append(probe["val_accuracy"])  # best.keras holds the probe until beaten
        best_cb = best_model_checkpoint(
            work / "best.keras",
            class_names=class_names,
            input_spec=spec,
            best=max(earlier, default=None),
            since_epoch=since,
        )
        callbacks.append(best_cb)

    callbacks.append(history_cb)  # it records what the others added to the logs
    # Last: a kill before the backup is written repeats the epoch, history and all.
    callbacks.append(EpochBackup(work / "backup"))
    if chief and overwrite:
        callbacks.append(_drop_earlier_run_callback(out))
    if config.strategy == "multiworker":
        _multiworker_fixes(model, strategy, next(iter(splits.train)))
    from zoo_transfer.training import fit_transfer

    try:  # on cached backbone features when exact: the frozen forward pass runs once
        with interrupt_guard() as stop, fit_scope(strategy):  # (a swallowed Ctrl-C stops too)
            trained = fit_transfer(
                model,
                splits,
                epochs=config.epochs,
                initial_epoch=initial_epoch,
                callbacks=[stop, *callbacks],
                cache="auto" if config.cache_features else "never",
                probe=False,  # done above
                verbose=verbose,
                cache_dir=work / "features",
                seed=config.seed,
                shuffle=False,  # the pipeline shuffles: epoch e's order comes from (seed, e)
            )
        cached, model = trained.cached, trained.model  # by stage: the last size's build
    except KeyboardInterrupt:
        hint = command or f"zoo-transfer train {config.model} --data {config.data}"
        hint = hint if "--resume" in hint else f"{hint} --resume"
        if chief:
            current = stop.model or model  # by stage: the build of the interrupted epoch
            save_for_inference(
                current, out / "interrupted.keras", class_names=class_names, input_spec=spec
            )
        raise TrainingInterrupted(
            f"Interrupted. Finished epochs are saved in {out} (interrupted.keras holds the "
            f"weights at the interruption). Continue with:\n  {hint}",
            resume_command=hint,
        ) from None

    history = _as_lists(history_cb.records)
    events = _events(history, unfreeze)
    val_accuracy = history.get("val_accuracy", [None])[-1] if history else None
    final_from = "last epoch"
    wise = None
    if config.wise_ft is not None:  # the last epoch toward the probe, whatever `final` says
        wise = _wise_ft(config, model, splits, work, verbose)
        val_accuracy = wise.get("val_accuracy", val_accuracy)
        final_from = f"WiSE-FT mix (alpha {wise['alpha']:g}) of the linear probe and the last epoch"
    elif config.final == "best" and best_cb is not None and val_accuracy is not None:
        if best_cb.best > val_accuracy and (work / "best.keras").exists():
            best = keras.saving.load_model(work / "best.keras", compile=False)
            model.set_weights(best.get_weights())
            val_accuracy = best_cb.best
            epochs_seen = history.get("val_accuracy", [])
            from_probe = (probe or {}).get("val_accuracy") == best_cb.best
            final_from = (
                f"epoch {epochs_seen.index(best_cb.best) + 1}"
                if best_cb.best in epochs_seen and not from_probe
                else "linear probe"
            )
    if chief:
        final = save_for_inference(
            model, out / "final.keras", class_names=class_names, input_spec=spec
        )
        (out / "interrupted.keras").unlink(missing_ok=True)
        if report:
            if config.strategy == "multiworker":  # predict here alone, not collectively
                model = keras.saving.load_model(final)
            shown = {**probe, "final_from": final_from} if probe and not wise else probe
            _write_report(
                out, model, splits, class_names, history, events, config, recipe, spec, shown,
                wise_ft=wise, domain=domain,
            )  # fmt: skip
    else:
        shutil.rmtree(work, ignore_errors=True)
    return JobResult(
        out, history, class_names, val_accuracy, list(splits.skipped), events, model,
        _fingerprint(model), cached, probe, final_from, wise, domain, dict(config.chosen),
    )  # fmt: skip


def _check_transformer_sizes(card: Any, sizes: list[int], config: JobConfig) -> None:
    """--progressive on a transformer: every size a multiple of its patch size; no
    --wise-ft (its probe would be at the first size, the last epoch at the last)."""
    patch = card.stages[-1].stride
    odd = [s for s in sizes if s % patch]
    if odd:
        raise BuildArgumentError(
            f"--progressive {','.join(map(str, sizes))}: {card.name} cuts images into "
            f"{patch}x{patch} patches, and {odd[0]} px is not a multiple of {patch}. Use "
            f"sizes like {', '.join(str(patch * k) for k in (8, 12, 16))}."
        )
    if config.wise_ft is not None:
        raise BuildArgumentError(
            f"--wise-ft with --progressive on {card.name}: WiSE-FT mixes the linear probe "
            f"({sizes[0]} px) with the last epoch ({sizes[-1]} px), and a transformer's "
            "models at two sizes do not mix. Drop one of them."
        )


def _stored_features(
    name: str, weights: Any, splits: Any, spec: InputSpec, verbose: int
) -> tuple[Any, Any, Any, Any] | None:
    """`(x, y, x_val, y_val)` from the features `zoo-transfer rank` stored for this model,
    these weights, this input spec and exactly these image files; None otherwise."""
    from zoo_transfer.feature_cache import PROBE_KEY, FeatureCache

    train, val = splits.train_files, splits.val_files
    if train is None:
        return None
    files = train.paths + (val.paths if val is not None else [])
    found = FeatureCache().get(PROBE_KEY.format(name), weights, spec, files)
    if found is None:
        return None
    if verbose:
        print(
            f"linear probe: the backbone features of {len(files)} images come from "
            "zoo-transfer rank (same model, weights, input spec and files)"
        )
    n = len(train.paths)
    if val is None:
        return found[:n], train.labels, None, None
    return found[:n], train.labels, found[n:], val.labels


def _probe(
    config: JobConfig,
    plan: Any,
    model: Any,
    splits: Any,
    out: Path,
    work: Path,
    initial_epoch: int,
    chief: bool,
    verbose: int,
    spec: InputSpec,
    stored: Any = None,
) -> dict[str, Any] | None:
    """The linear probe before the first epoch, written to `probe.json` (and, with
    validation images, to `best.keras`); on a resumed run, the one written then.
    `stored`: the backbone features `zoo-transfer rank` kept (`_stored_features`)."""
    from zoo_transfer.saving import save_for_inference
    from zoo_transfer.training import probe_head

    path = out / "probe.json"
    if initial_epoch > 0:  # the restored head already started from it
        return json.loads(path.read_text()) if path.exists() else None
    if not (plan.probe if config.probe is None else config.probe):
        return None
    result = probe_head(model, splits, verbose=verbose, features=stored)
    if result is None:
        if config.wise_ft is not None:
            raise BuildArgumentError(
                "--wise-ft interpolates toward the linear probe's weights, but the probe was "
                "skipped: the head has hidden layers. Use a recipe with a linear head "
                "(--recipe lp-ft), or drop --wise-ft."
            )
        return None
    probe = {
        "features_from_rank": stored is not None,
        "val_accuracy": result.val_accuracy,
        "train_accuracy": result.train_accuracy,
        "l2": result.l2,
        "tried": [list(t) for t in result.tried],
        "seconds": round(result.seconds, 2),
    }
    if chief:
        _write_json(path, probe)
    if result.val_accuracy is not None:  # every worker: each restores from its own copy
        save_for_inference(
            model,
            work / "best.keras",
            class_names=list(splits.class_names),
            input_spec=spec,
        )
    if config.wise_ft is not None:  # WiSE-FT's reference; best.keras may be replaced
        save_for_inference(
            model, work / PROBE_MODEL, class_names=list(splits.class_names), input_spec=spec
        )
    return probe


def _fingerprint(model: Any) -> str:
    """md5 of every weight: equal on all workers when their gradients were all-reduced."""
    import hashlib

    import keras
    import numpy as np

    digest = hashlib.md5()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()
