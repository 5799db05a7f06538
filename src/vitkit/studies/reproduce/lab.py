"""The machinery every claim's experiment uses: data, pre-training runs, transfer, baselines.

A :class:`Lab` turns a :class:`~vitkit.studies.reproduce.budget.Budget` and two data sources (pre-training:
MNIST-5k by default; transfer: the scikit-learn digits) into measurements, always through
vitkit's own library calls -- :func:`vitkit.train.train` for every pre-training, fine-tuning and
from-scratch run, :func:`vitkit.evaluate.fewshot_evaluate` for few-shot linear transfer (§4.1),
:func:`vitkit.inspect.mean_attention_distance` for Fig. 7 -- so the report measures the toolkit a
user runs.

Runs are cached by their complete configuration: a run that two claims need (the 1-D, class-token
ViT on the 7x7 grid serves Table 8, Fig. 9 and Fig. 7; the compute ladder's largest rungs are the main
models of the other claims) is trained once, and a finished (or early-stopped) run directory under
``OUT/runs`` is reused when ``vitkit reproduce`` is started again with the same ``--out`` (an
interrupted run is resumed). A run's data is named by its file under ``OUT/data``, and each file by a
digest of its contents, so an ``--out`` reused with another pre-training source (or a changed tinting) makes
new files and trains new runs instead of reusing the old ones.

Pre-training subsets (Fig. 3/4) are nested, class-balanced draws from the training split, written
once as ``.npz`` files under ``OUT/data``; each holds out a validation split of its own images for early
stopping (:meth:`Lab.subset_validation_source`), and every subset's model is scored on the same transfer
data.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vitkit.atomic import atomic_path
from vitkit.data.sources import LabeledImages, open_source
from vitkit.errors import VitkitError
from vitkit.studies.reproduce.budget import Budget
from vitkit.studies.reproduce.stats import Gate, mpp_gate, supervised_gate
from vitkit.studies.reproduce.workers import RunPool, process_cpu_seconds

#: what a run's cache key leaves out: where it is written, where it runs, how often it checkpoints and how many
#: data-loading processes it has do not change what it is (a batch's crops come from its own generator,
#: whichever process makes it: :func:`vitkit.data.loader.batch_generator`)
_NOT_IN_KEY = ("out", "device", "save_epochs", "num_workers")
#: checkpoints a run writes (about; at most one an epoch): a run of one-batch epochs is not spent writing them
CHECKPOINTS = 8
#: training losses a run logs (about; every run of at least this many steps): enough points for the
#: plateau gate (:func:`vitkit.studies.reproduce.stats.plateaued` needs 8) whatever the run's length
LOGGED_POINTS = 24
#: the family of a miniature, from the variant its name starts with
FAMILY_NAMES = {"ViT-Ti/16": "ViT", "BiT-R26x1": "ResNet (BiT)", "R+ViT-Ti/16": "Hybrid"}


@dataclass
class Run:
    """One finished training run: where it is, what it measured, what it cost."""

    label: str
    run_dir: Path
    metrics: dict[str, float]
    #: wall time of the training loop, as the run recorded it (also for a reused run)
    seconds: float
    images_seen: int
    #: forward-pass GFLOPs of one image at the training resolution (vitkit.count_flops)
    gflops_per_image: float
    reused: bool = False
    #: the run ended by ``early_stop`` (:mod:`vitkit.train.early_stop`); its model is the best evaluation's
    stopped_early: bool = False
    #: where its model is: ``model`` (the last step's) or ``best`` (a run with ``early_stop``: the best evaluation's)
    model_subdir: str = "model"

    @property
    def model_dir(self) -> Path:
        return self.run_dir / self.model_subdir

    @property
    def train_tflops(self) -> float:
        """Training compute in TFLOPs: 3 x forward FLOPs (the backward pass costs about twice the forward)
        x images seen."""
        return 3.0 * self.gflops_per_image * 1e9 * self.images_seen / 1e12

    def load(self) -> torch.nn.Module:
        from vitkit.checkpoints.detect import load_model

        return load_model(self.model_dir).eval()


def _one_at_a_time(method: Callable) -> Callable:
    """A lab method that writes or caches data, run by one thread at a time (claims call the lab from several
    threads: :meth:`Lab.parallel`)."""

    @functools.wraps(method)
    def locked(self: Lab, *args: Any, **kwargs: Any) -> Any:
        with self._data_lock:
            return method(self, *args, **kwargs)

    return locked


def _run_key(fields: dict[str, Any]) -> str:
    """The short hash that names a run's directory: the same settings, the same directory (reused)."""
    return hashlib.sha1(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")[:48]


def _class_balanced_order(labels: np.ndarray, seed: int) -> list[np.ndarray]:
    """Per class, a seeded permutation of its indices (nested subsets take prefixes)."""
    return [np.random.default_rng([seed, int(k)]).permutation(np.flatnonzero(labels == k))
            for k in np.unique(labels)]


def balanced_subset(labels: np.ndarray, share: float) -> np.ndarray:
    """Sorted indices of a class-balanced ``share`` of the items (at least one per class); nested in ``share``."""
    if share >= 1.0:
        return np.arange(len(labels))
    orders = _class_balanced_order(labels, seed=0)
    return np.sort(np.concatenate([o[:max(1, int(round(len(o) * share)))] for o in orders]))


def _pixels(dataset: LabeledImages, size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (N, H, W, 3), labels) of a source; file-backed images are decoded and resized to
    ``size`` x ``size`` (unreadable ones are left out)."""
    if hasattr(dataset, "arrays"):
        images, labels = dataset.arrays()
        return np.asarray(images), np.asarray(labels)
    from PIL import Image

    images, labels = [], []
    for i in range(len(dataset)):
        image, label = dataset[i]
        if image is None:
            continue
        if size is not None:
            image = image.resize((size, size), Image.Resampling.BICUBIC)
        images.append(np.asarray(image.convert("RGB"), dtype=np.uint8))
        labels.append(label)
    if not images:
        raise VitkitError(f"{dataset.source}: no readable images")
    if len({im.shape for im in images}) > 1:
        raise VitkitError(f"{dataset.source}: images of different sizes; they are resized to one size only "
                          f"when a size is given")
    return np.stack(images), np.asarray(labels, dtype=np.int64)


class Lab:
    """Measurements for the claims (see the module notes). ``report`` receives one-line progress."""

    def __init__(self, budget: Budget, out: str | Path, *, pretrain_data: str = "mnist5k",
                 transfer_data: str = "digits", device: str = "auto", num_workers: int = 0, progress: bool = False,
                 report: Callable[[str], None] = lambda _line: None, jobs: int = 1, threads: int = 1) -> None:
        self.budget = budget
        self.num_workers = num_workers
        self.out = Path(out)
        self.pretrain_data = pretrain_data
        self.transfer_data = transfer_data
        self.device = device
        self.progress = progress
        self.report = report
        self._runs: dict[str, Run] = {}
        self._subsets: dict[float, tuple[str, int]] = {}
        self._transfer: tuple[LabeledImages, LabeledImages] | None = None
        self._train_counts: dict[str, int] = {}
        self.runs_trained = 0
        self.runs_reused = 0
        self._data_lock = threading.RLock()
        self._runs_lock = threading.Lock()
        self._pending: dict[str, Future] = {}
        # Validate both sources before any work (one-line errors for a bad spec).
        self._pretrain_train = open_source(pretrain_data, "train")
        self._pretrain_test = open_source(pretrain_data, "test")
        if list(self._pretrain_train.label_names) != list(self._pretrain_test.label_names):
            raise VitkitError(f"{pretrain_data}: the training and test splits name different classes")
        self.transfer()
        self._pool = RunPool(jobs, threads)

    def parallel(self, work: Callable[..., Any], items: Iterable[tuple]) -> dict[tuple, Any]:
        """``{item: work(*item)}`` for every tuple in ``items``, up to ``jobs`` of them at once (each training run
        in a worker process: :mod:`vitkit.studies.reproduce.workers`): a claim's independent runs (arms, seeds)."""
        items = list(items)
        return dict(zip(items, self._pool.map(lambda item: work(*item), items), strict=True))

    def cpu_seconds(self) -> float:
        """CPU seconds so far of this process, its finished children and the runs trained in worker processes."""
        return process_cpu_seconds() + self._pool.worker_cpu_seconds

    def close(self) -> None:
        """Stop the worker processes."""
        self._pool.close()

    # ------------------------------------------------------------------------------ data
    @_one_at_a_time
    def transfer(self) -> tuple[LabeledImages, LabeledImages]:
        """(train, test) of the transfer data set."""
        if self._transfer is None:
            train, test = open_source(self.transfer_data, "train"), open_source(self.transfer_data, "test")
            if list(train.label_names) != list(test.label_names):
                raise VitkitError(f"{self.transfer_data}: the training and test splits name different classes")
            self._transfer = (train, test)
        return self._transfer

    @property
    def pretrain_size(self) -> int:
        """Images in the full pre-training set (after the budget's limit)."""
        n = len(self._pretrain_train)
        return min(n, self.budget.pretrain_limit) if self.budget.pretrain_limit else n

    @_one_at_a_time
    def pretrain_source(self, fraction: float = 1.0) -> tuple[str, int]:
        """(data spec, number of training images) of a class-balanced ``fraction`` of the pre-training set."""
        if fraction in self._subsets:
            return self._subsets[fraction]
        store = max(self.budget.image_size, self.budget.headline_size)
        train_x, train_y = _pixels(self._pretrain_train, store)
        test_x, test_y = self._test_pixels(store)
        idx = balanced_subset(train_y, self.pretrain_size / len(train_y) * fraction)
        path = _write_split(self.out / "data" / f"pretrain-{len(idx)}.npz", (train_x[idx], train_y[idx]),
                            (test_x, test_y), self._pretrain_train.label_names)
        self._subsets[fraction] = (str(path), int(len(idx)))
        return self._subsets[fraction]

    @_one_at_a_time
    def subset_validation_source(self, fraction: float) -> tuple[str, int]:
        """The class-balanced ``fraction`` of the pre-training set (:meth:`pretrain_source`'s images), split into
        training images and a validation split (``budget.validation_share`` of each class, seed 0) stored as its
        test split: (data spec, training images). Early stopping on it chooses a subset's model without the
        test split (the data-size claim)."""
        from vitkit.data.sources import stratified_split

        spec, _ = self.pretrain_source(fraction)
        with np.load(spec, allow_pickle=False) as arrays:
            images, labels, names = arrays["x_train"], arrays["y_train"], arrays["label_names"]
        keep, held = stratified_split(labels, self.budget.validation_share, seed=0)
        path = _write_split(self.out / "data" / f"pretrain-{len(labels)}-train-{len(keep)}-validation-{len(held)}.npz",
                            (images[keep], labels[keep]), (images[held], labels[held]), names)
        return str(path), int(len(keep))

    @_one_at_a_time
    def validation_source(self, which: str, size: int | None = None) -> tuple[str, int]:
        """A data spec whose test split is a validation split held out of the training data of ``which``
        (``pretrain``: the budget's pre-training images; ``transfer``): ``budget.validation_share`` of each
        class (:func:`vitkit.data.sources.stratified_split`, seed 0), the rest its training split; returns
        (data spec, number of training images). A run
        trained on it reports its validation accuracy as ``test_top1``, so choices made on that number leave
        the test split unseen (:meth:`test_accuracy` scores it). File-backed images are resized to ``size``."""
        from vitkit.data.sources import stratified_split

        if which == "pretrain":
            source = self._pretrain_train
            images, labels = _pixels(source, size)
            keep = balanced_subset(labels, self.pretrain_size / len(labels))
            images, labels = images[keep], labels[keep]
        else:
            source = self.transfer()[0]
            images, labels = _pixels(source, size)
        train_idx, val_idx = stratified_split(labels, self.budget.validation_share, seed=0)
        path = _write_split(self.out / "data" / f"{which}-{len(train_idx)}-validation-{len(val_idx)}-"
                                                f"{images.shape[1]}px.npz",
                            (images[train_idx], labels[train_idx]), (images[val_idx], labels[val_idx]),
                            source.label_names)
        return str(path), int(len(train_idx))

    @_one_at_a_time
    def tinted_source(self, which: str, *, validation: bool = False) -> tuple[str, int]:
        """(data spec, number of training images) of ``which`` (``pretrain``: the budget's pre-training images;
        ``transfer``) with every image tinted (:func:`vitkit.data.tint.tint`: a random ink and paper per image,
        independent of its class), stored at the budget's ``image_size``: the colour task masked patch
        prediction needs (§4.6). ``validation``: the training images' validation split
        (``budget.validation_share`` of each class, seed 0) as the test split, the rest as training split."""
        from vitkit.data.sources import stratified_split
        from vitkit.data.tint import tint

        size = self.budget.image_size
        if which == "pretrain":
            train_x, train_y = _pixels(self._pretrain_train, None)
            keep = balanced_subset(train_y, self.pretrain_size / len(train_y))
            train_x, train_y = train_x[keep], train_y[keep]
            test_x, test_y = self._test_pixels(None)
            names = self._pretrain_train.label_names
        else:
            train, test = self.transfer()
            (train_x, train_y), (test_x, test_y), names = _pixels(train, None), _pixels(test, None), train.label_names
        # tinted at the images' own size, then resized to the size the models see, so the stored pixels are
        # the ones the colour targets are computed from
        train_x, test_x = _resized(tint(train_x, seed=1), size), _resized(tint(test_x, seed=2), size)
        if validation:
            keep, held = stratified_split(train_y, self.budget.validation_share, seed=0)
            train_x, train_y, test_x, test_y = train_x[keep], train_y[keep], train_x[held], train_y[held]
        split = "validation" if validation else "test"
        path = _write_split(self.out / "data" / f"tinted-{which}-{len(train_x)}-{split}-{len(test_x)}-{size}px.npz",
                            (train_x, train_y), (test_x, test_y), names)
        return str(path), int(len(train_x))

    def colour_gate(self, run: Run, arm: str, data: str) -> Gate:
        """Whether a masked-patch-prediction ``run`` pre-trained on ``data`` (a :meth:`tinted_source` spec)
        learned its objective (:func:`~vitkit.studies.reproduce.stats.mpp_gate`): its test loss and colour
        accuracy against the class-marginal baseline of the 3-bit mean-colour targets of ``data``'s test images."""
        patch = json.loads((run.model_dir / "config.json").read_text())["architecture"]["patch_size"]
        patch = int(patch[0] if isinstance(patch, list | tuple) else patch)
        with np.load(data, allow_pickle=False) as arrays:
            counts = np.bincount(patch_colour_classes(arrays["x_test"], patch), minlength=512)
        return mpp_gate(arm, run.metrics["test_color_accuracy"], run.metrics["test_loss"], counts)

    def test_accuracy(self, run: Run, which: str) -> float:
        """Top-1 of ``run``'s model on the test split of ``which`` (``pretrain``: under the budget's
        ``test_limit``; ``transfer``; or a data spec): for runs whose own ``test_top1`` is a validation
        accuracy."""
        from vitkit.data.sources import ArrayImages
        from vitkit.evaluate.metrics import evaluate

        model = run.load().to(self._torch_device())
        if which == "pretrain":
            images, labels = self._test_pixels(model.preprocessing.image_size[0])
            test = ArrayImages(images, labels, list(self._pretrain_train.label_names), source=self.pretrain_data,
                               split="test")
        elif which == "transfer":
            test = self.transfer()[1]
        else:
            test = open_source(which, "test")
        return float(evaluate(model, test, batch_size=self.budget.batch_size).top1)

    def gate(self, run: Run, arm: str) -> Gate:
        """Whether ``run`` trained (:func:`~vitkit.studies.reproduce.stats.supervised_gate`): its held-out
        ``test_top1`` (a validation accuracy for runs on :meth:`validation_source`) and the training losses it
        logged."""
        from vitkit.train.rundir import read_metrics

        losses = [row["value"] for row in read_metrics(run.run_dir) if row["metric"] == "train/loss"]
        meta = json.loads((run.model_dir / "config.json").read_text())
        classes = len(meta.get("label_names") or ()) or int(meta["architecture"]["num_classes"])
        return supervised_gate(arm, run.metrics["test_top1"], classes, losses, stopped_early=run.stopped_early)

    @_one_at_a_time
    def image_folder(self, size: int) -> str:
        """The pre-training set written as an ImageFolder tree of ``size``-px PNGs (``train/``, ``test/``):
        the few-thousand-image folder data set of the small-data claim."""
        from PIL import Image

        names = self._pretrain_train.label_names
        train_x, train_y = _pixels(self._pretrain_train, size)
        idx = balanced_subset(train_y, self.pretrain_size / len(train_y))
        splits = (("train", (train_x[idx], train_y[idx])), ("test", self._test_pixels(size)))
        # named by its contents, as the .npz files are (_write_split)
        digest = _digest(*(a for _, pair in splits for a in pair), np.asarray(names))
        root = self.out / "data" / f"imagefolder-{size}px-{digest}"
        done = root / ".complete"
        if done.exists():
            return str(root)
        for split, (images, labels) in splits:
            for i, (pixels, label) in enumerate(zip(images, labels, strict=True)):
                target = root / split / names[int(label)] / f"{i:05d}.png"
                target.parent.mkdir(parents=True, exist_ok=True)
                picture = Image.fromarray(pixels)
                if picture.size != (size, size):
                    picture = picture.resize((size, size), Image.Resampling.BICUBIC)
                with atomic_path(target) as tmp:
                    picture.save(tmp, format="PNG")
        done.write_text("")
        return str(root)

    @_one_at_a_time
    def train_images(self, data: str) -> int:
        """Images in the training split of ``data``."""
        if data not in self._train_counts:
            self._train_counts[data] = len(open_source(data, "train"))
        return self._train_counts[data]

    def _test_pixels(self, size: int | None) -> tuple[np.ndarray, np.ndarray]:
        """The pre-training test split (a class-balanced part of it under the budget's ``test_limit``)."""
        images, labels = _pixels(self._pretrain_test, size)
        if self.budget.test_limit:
            idx = balanced_subset(labels, self.budget.test_limit / len(labels))
            images, labels = images[idx], labels[idx]
        return images, labels

    # ------------------------------------------------------------------------------ runs
    @staticmethod
    def steps_per_epoch(images: int, batch_size: int) -> int:
        """The trainer's steps an epoch (the last partial batch dropped), at least one."""
        return max(1, images // batch_size)

    def steps_for(self, images: int, epochs: float, batch_size: int) -> int:
        return max(1, math.ceil(epochs * images / batch_size))

    def train(self, label: str, options: dict[str, Any]) -> Run:
        """Train (or reuse) one run of :class:`~vitkit.train.TrainConfig` ``options`` (``out`` is chosen here).
        A run that another thread is training is waited for, not trained twice."""
        from vitkit.train import TrainConfig

        steps = options.get("steps")
        log_every = max(1, steps // LOGGED_POINTS) if steps else 50
        per_epoch = self.steps_per_epoch(self.train_images(options["data"]), options.get("batch_size", 1))
        config = TrainConfig(**{"device": self.device, "num_workers": self.num_workers, "eval_every": 1_000_000,
                                "log_every": log_every, "save_epochs": max(1, (steps or 0) // per_epoch // CHECKPOINTS),
                                **options})
        key = _run_key({k: v for k, v in config.to_dict().items() if k not in _NOT_IN_KEY})
        with self._runs_lock:
            if key in self._runs:
                return self._runs[key]
            pending, owner = self._pending.get(key), False
            if pending is None:
                pending, owner = self._pending.setdefault(key, Future()), True
        if not owner:
            return pending.result()
        try:
            run = self._train_run(label, key, config)
            pending.set_result(run)
            return run
        except BaseException as error:
            pending.set_exception(error)
            raise
        finally:
            with self._runs_lock:
                if pending.done() and pending.exception() is None:
                    self._runs[key] = pending.result()
                self._pending.pop(key, None)

    def _train_run(self, label: str, key: str, config: Any) -> Run:
        run_dir = self.out / "runs" / f"{_slug(label)}-{key}"
        config = config.replace(out=str(run_dir))
        summary_path = run_dir / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
        reused = bool(summary and (summary.get("finished") or summary.get("reason") == "early_stop"))
        if not reused:
            self.report(f"  training {label}")
            self._pool.train(config, resume=(run_dir / "state.pt").is_file(), progress=self.progress)
            (run_dir / "state.pt").unlink(missing_ok=True)  # finished: summary.json and model/ are what is reused
            summary = json.loads(summary_path.read_text())
        with self._runs_lock:
            if reused:
                self.runs_reused += 1
            else:
                self.runs_trained += 1
        metrics, seconds, best = dict(summary["metrics"]), float(summary.get("seconds", 0.0)), summary.get("best")
        if best:  # an early-stopping run is its best evaluation: that model, that number
            metrics[best["metric"]] = best["value"]
        return Run(label, run_dir, {k: float(v) for k, v in metrics.items()}, seconds,
                   images_seen=config.batch_size * int(summary.get("step") or config.steps or 0),
                   gflops_per_image=_gflops_per_image(run_dir / "model"), reused=reused,
                   stopped_early=summary.get("reason") == "early_stop", model_subdir="best" if best else "model")

    def pretrain(self, arch: dict[str, Any], seed: int, *, fraction: float = 1.0, lr: float | None = None,
                 size: int | None = None, epochs: float | None = None, label: str = "", objective: str = "supervised",
                 validation: bool = False, source: tuple[str, int] | None = None, early_stop: int | None = None,
                 evaluations: int | None = None, **model_overrides: Any) -> Run:
        """Pre-train a miniature ``arch`` (a ``{"model", "model_options"}`` entry of the budget) on a
        ``fraction`` of the pre-training set at ``size`` px (the budget's by default). Every fraction
        gets the number of steps the full set gets in ``epochs`` (``budget.pretrain_epochs``) epochs:
        smaller sets are seen more often, as in §4.2. ``objective``: ``mpp`` or ``mae`` pre-train
        without the labels (:mod:`vitkit.objectives`), with that objective's recipe. ``validation``: train on
        the images left after the validation split (:meth:`validation_source`; ``epochs`` over those), whose
        accuracy the run then reports as its ``test_top1``. ``source``: (data spec, training images) to
        pre-train on instead (e.g. :meth:`tinted_source`). ``early_stop``: stop after that many of the run's
        ``evaluations`` (spread evenly over its epochs) without a better one, the best evaluation's model being
        the run's (:mod:`vitkit.train.early_stop`; on a validation source, as :meth:`subset_validation_source`)."""
        from vitkit.train import recipe_defaults
        from vitkit.train.recipes import paper_pretraining_head

        b = self.budget
        if source is not None:
            data, images = source
        elif validation:
            data, images = self.validation_source("pretrain", size or b.image_size)
        else:
            data, images = self.pretrain_source(fraction)[0], self.pretrain_size
        steps = self.steps_for(images, epochs or b.pretrain_epochs, b.batch_size)
        model_options = self._architecture(arch, model_overrides)
        if objective == "supervised":  # pre-training to transfer, with the paper's head (§3.1, pre-logits)
            model_options = paper_pretraining_head(arch["model"], model_options)
        options = {**recipe_defaults("pretrain", objective), "model": arch["model"],
                   "model_options": model_options, "data": data,
                   "image_size": size or b.image_size, "batch_size": b.batch_size, "steps": steps, "lr": lr or b.lr,
                   "weight_decay": b.weight_decay, "flip": False, "crop_scale": b.crop_scale, "crop_pct": 1.0,
                   "seed": seed}
        if early_stop:  # about ``evaluations`` over the run whatever the subset's size (at most one an epoch)
            every = max(1, round(steps / self.steps_per_epoch(images, b.batch_size) / (evaluations or 16)))
            # checkpoints where the evaluations are: a resumed run's best (OUT/best) and its state agree
            options.update(early_stop=early_stop, eval_every=every, save_epochs=every)
        return self.train(label or f"pretrain {arch['model']}", options)

    def grid_setup(self) -> str:
        """How a claim's setup names the finer-grid pre-training it shares (:meth:`grid_pretrain`)."""
        b = self.budget
        grid = b.grid_size // b.grid_model["model_options"]["patch_size"]
        return (f"pre-trained on {self.pretrain_data} at {b.grid_size} px ({grid}x{grid} patches) for "
                f"{b.grid_epochs} epochs at peak lr {b.grid_peak_lr:g}")

    def grid_pretrain(self, seed: int, *, lr: float | None = None, posemb: str = "learned_1d",
                      classifier: str = "token", epochs: float | None = None) -> Run:
        """The finer-grid ViT that Table 8, Fig. 9 and Fig. 7 share (the budget's ``grid_*``), pre-trained
        with ``seed`` on the images left after the validation split (its ``test_top1`` is the validation
        accuracy; :meth:`gate` reads it) for ``epochs`` (the budget's ``grid_epochs``). Named by its settings,
        so the 1-D, class-token run at the grid's rate is one run (one directory) for all three claims, also when
        they are run one at a time."""
        b = self.budget
        lr = lr or b.grid_peak_lr
        epochs = epochs or b.grid_epochs
        longer = "" if epochs == b.grid_epochs else f" {epochs:g} epochs"
        return self.pretrain(b.grid_model, seed, lr=lr, size=b.grid_size, epochs=epochs, validation=True,
                             label=f"vit grid {posemb} {classifier} lr {lr:g}{longer} seed {seed}", posemb=posemb,
                             classifier=classifier)

    def grid_trained(self, seed: int, *, posemb: str = "learned_1d") -> tuple[Run, float]:
        """(run, epochs) of :meth:`grid_pretrain` at the grid's rate with a class token, trained until its gate
        passes (:meth:`until_trained`): Table 8 compares converged models, and an arm that learns more slowly
        (no position embedding) needs longer to get there."""
        return self.until_trained(lambda epochs: self.grid_pretrain(seed, posemb=posemb, epochs=epochs),
                                  self.budget.grid_epochs)

    def until_trained(self, train: Callable[[float], Run], epochs: float,
                      gate: Callable[[Run], Gate] | None = None) -> tuple[Run, float]:
        """(run, epochs): ``train(epochs)``, and where that run's ``gate`` (a supervised run's :meth:`gate` unless
        given) fails, ``train`` afresh for each longer schedule of ``budget.gate_extensions`` (multiples of
        ``epochs``) in turn until one passes; the last run trained is the result, passed or not (its gate then
        says so)."""
        gate = gate or (lambda run: self.gate(run, ""))
        for factor in (1.0, *self.budget.gate_extensions):
            run = train(epochs * factor)
            if gate(run).passed:
                break
        return run, epochs * factor

    @staticmethod
    def _architecture(arch: dict[str, Any], model_overrides: dict[str, Any]) -> dict[str, Any]:
        """``arch``'s model options with ``model_overrides``; models with position embeddings and a choice of
        classifier (ViTs) spelled one way (learned 1-D position embeddings, a [class] token unless
        overridden), so that claims share their runs."""
        from vitkit.models.registry import get_config

        config = get_config(arch["model"])
        spelled = {name: value for name, value in (("posemb", "learned_1d"), ("classifier", "token"))
                   if hasattr(config, name)}
        return {**arch["model_options"], **spelled, **model_overrides}

    @_one_at_a_time
    def initial(self, arch: dict[str, Any], seed: int, *, label: str = "", **model_overrides: Any) -> Run:
        """The randomly initialised model a pre-training run of ``arch`` with ``seed`` starts from, saved
        as a run of no steps: fine-tuning it is training from scratch."""
        from vitkit.checkpoints.native import save_native
        from vitkit.models import create_model
        from vitkit.train.recipes import paper_pretraining_head

        b = self.budget
        options = paper_pretraining_head(arch["model"], self._architecture(arch, model_overrides))
        key_fields = {"model": arch["model"], "options": options, "seed": seed, "size": b.image_size}
        key = _run_key(key_fields)
        run_dir = self.out / "runs" / f"{_slug(label or 'init')}-{key}"
        reused = (run_dir / "model" / "config.json").is_file()
        if not reused:
            model = create_model(arch["model"], num_classes=len(self._pretrain_train.label_names),
                                 image_size=b.image_size, seed=seed, **options)
            save_native(model, run_dir / "model")
        return Run(label or "initial weights", run_dir, {}, 0.0, images_seen=0,
                   gflops_per_image=_gflops_per_image(run_dir / "model"), reused=reused)

    def finetune(self, run: Run, seed: int) -> float:
        """Fine-tuned top-1 on the transfer test split (§3.2: new zero head, SGD, cosine decay)."""
        return self.finetune_run(run, seed).metrics["test_top1"]

    def finetune_run(self, run: Run, seed: int, *, data: str | None = None, lr: float | None = None,
                     epochs: float | None = None) -> Run:
        """The run fine-tuning ``run`` on ``data`` (the transfer set by default) with ``lr`` for ``epochs``
        (the budget's ``finetune_lr`` / ``finetune_epochs`` by default); its ``test_top1`` is ``data``'s test
        split (a validation split for a validation spec), :meth:`gate` reads it."""
        from vitkit.train import recipe_defaults

        b = self.budget
        data = data or self.transfer_data
        images = self.train_images(data)
        batch = min(b.batch_size, images)
        lr = lr or b.finetune_lr
        options = {**recipe_defaults("finetune"), "checkpoint": str(run.model_dir), "data": data,
                   "image_size": b.image_size, "batch_size": batch,
                   "steps": self.steps_for(images, epochs or b.finetune_epochs, batch), "lr": lr,
                   "ema": None, "flip": False, "crop_scale": (0.85, 1.0), "crop_pct": 1.0, "seed": seed}
        suffix = "" if data == self.transfer_data and lr == b.finetune_lr and not epochs else f" lr {lr:g}"
        return self.train(f"finetune {run.label}{suffix}", options)

    def fewshot(self, run: Run, seed: int, data: str | None = None) -> float:
        """Few-shot linear accuracy (§4.1) of the frozen representation on the transfer set (or ``data``),
        mean over draws."""
        from vitkit.evaluate.fewshot import fewshot_evaluate

        train_set, test_set = self.transfer() if data is None else (open_source(data, "train"),
                                                                      open_source(data, "test"))
        model = run.load()
        results = fewshot_evaluate(model, train_set, test_set, shots=[self.budget.shots], draws=self.budget.draws,
                                   seed=seed, device=self._torch_device())
        return results[0].mean

    def attention_distance(self, model: torch.nn.Module) -> np.ndarray:
        """(layers, heads) mean attention distance in pixels over test images of the pre-training set."""
        from PIL import Image

        from vitkit.data.transforms import eval_transform
        from vitkit.inspect.distance import mean_attention_distance

        model = model.to(self._torch_device())
        transform = eval_transform(model.preprocessing)
        pixels, labels = self._test_pixels(None)
        idx = balanced_subset(labels, min(1.0, self.budget.attention_images / len(labels)))
        images = torch.stack([transform(Image.fromarray(pixels[i])) for i in idx])
        return mean_attention_distance(model, images, batch_size=64)

    def mlp_baseline(self, data: str, seed: int, size: int | None = None, test_data: str | None = None) -> float:
        """Top-1 of a pixel-space MLP (scikit-learn's MLPClassifier; Adam, early stopping on 10% of the
        training split) trained on ``data``'s training split, on the test split of ``test_data`` (``data``'s
        by default), the images resized as the ViT sees them."""
        from sklearn.neural_network import MLPClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        from vitkit.data.preprocessing import Preprocessing
        from vitkit.data.transforms import eval_transform

        transform = eval_transform(Preprocessing(image_size=size or self.budget.image_size, crop_pct=1.0))

        def flat(dataset: LabeledImages) -> tuple[np.ndarray, np.ndarray]:
            rows = [(transform(img).numpy().ravel(), label) for img, label in (dataset[i] for i in range(len(dataset)))
                    if img is not None]
            return np.stack([r[0] for r in rows]), np.asarray([r[1] for r in rows])

        x_train, y_train = flat(open_source(data, "train"))
        x_test, y_test = flat(open_source(test_data or data, "test"))
        mlp = make_pipeline(StandardScaler(), MLPClassifier(
            hidden_layer_sizes=self.budget.mlp_hidden, max_iter=self.budget.mlp_max_iter, early_stopping=True,
            random_state=seed))
        import warnings

        from sklearn.exceptions import ConvergenceWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # the tiny budget stops early on purpose
            mlp.fit(x_train, y_train)
        return float(np.mean(mlp.predict(x_test) == y_test))

    def _torch_device(self) -> torch.device:
        from vitkit.train.distributed import resolve_device

        return resolve_device(self.device)


def _write_split(path: Path, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                 label_names) -> Path:
    """Write a data set the lab made as the ``.npz`` a ``--data`` spec reads (``x_train``, ``y_train``,
    ``x_test``, ``y_test``, ``label_names``), atomically, named ``path``'s stem and a digest of its contents
    (:func:`_digest`); returns that file. An existing file of that name is the same set and is kept: an ``--out``
    reused with other sources (or another tinting) gets new files, and so new run keys, never the old ones."""
    path = path.with_name(f"{path.stem}-{_digest(*train, *test, np.asarray(label_names))}{path.suffix}")
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, x_train=train[0], y_train=train[1], x_test=test[0], y_test=test[1],
                 label_names=np.asarray(label_names))
    return path


def _digest(*arrays: np.ndarray) -> str:
    """Ten hex digits of SHA-256 over the arrays' shapes, dtypes and bytes: the name of the data they make."""
    hasher = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        hasher.update(f"{array.shape}{array.dtype.str}".encode())
        hasher.update(array.tobytes())
    return hasher.hexdigest()[:10]


def _resized(images: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W, 3) uint8 images at ``size`` x ``size`` (bicubic, as the lab stores every set)."""
    from PIL import Image

    if images.shape[1:3] == (size, size):
        return images
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BICUBIC)) for im in images])


def patch_colour_classes(images: np.ndarray, patch: int) -> np.ndarray:
    """The 3-bit mean-colour class (§4.6, :func:`vitkit.objectives.mpp.color_classes`) of every ``patch`` x
    ``patch`` patch of (N, H, W, 3) uint8 ``images``, flattened: the targets masked patch prediction learns."""
    import torch.nn.functional as F

    from vitkit.objectives.mpp import color_classes

    pixels = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).double() / 255.0
    means = F.avg_pool2d(pixels, patch).flatten(2).transpose(1, 2)
    return color_classes(means).flatten().numpy()


def _gflops_per_image(model_dir: Path) -> float:
    """Forward GFLOPs of one image for a saved model, counted on a weightless (meta) copy."""
    from vitkit.checkpoints.native import model_from_metadata
    from vitkit.models.flops import count_flops

    meta = json.loads((model_dir / "config.json").read_text())
    with torch.device("meta"):
        model = model_from_metadata(meta)
    return count_flops(model)
