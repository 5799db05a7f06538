"""ONNX export, checked in onnxruntime against the model's own outputs before the file appears.

    >>> from vitkit.deploy.onnx import export_onnx, onnx_inputs, onnxruntime_session, run_onnx
    >>> done = export_onnx(vitkit.load_model("runs/s16/model"), "s16.onnx")
    >>> logits = run_onnx(onnxruntime_session("s16.onnx"), onnx_inputs("s16.onnx", ["cat.jpg"]))  # (1, K)

The graph takes ``pixel_values`` -- float32 (batch, 3, height, width), RGB, already resized and
normalised as the model's preprocessing says -- and returns ``logits`` (``features`` for a model
without a head; a backbone, :class:`~vitkit.models.features.FeatureExtractor`, returns its maps as
``feature_<index>``, one named output each, described in the ``output`` metadata). Any vitkit model
exports: the exporter reads only ``model.config`` (image_size, in_channels, num_classes, to_dict),
``model.stride`` (pixels per token side, the size step), ``model.preprocessing`` and
``model.label_names``.

The batch is always dynamic. The image size is dynamic too (any multiple of the patch size; the
position embeddings are resampled inside the graph, as the model's ``posemb_resample`` says, as §3.2
does at fine-tuning) when
the model traces that way; otherwise the export falls back to the model's own size, and the
result says so and why. A family whose forward decides shapes from the image size in Python
(Swin: padding to whole windows, shifts) declares ``fixed_size_graph_reason`` and is exported at
its own size directly.

The file carries what a deployment needs in its ``metadata_props`` (each value JSON):
``preprocessing`` (vitkit's fields: image_size, mean, std, interpolation, crop_pct, crop_mode),
``preprocessing_transform`` (the same transform spelled out for any client:
:meth:`vitkit.data.preprocessing.Preprocessing.to_export_dict`), ``label_names``,
``architecture`` (vitkit's config), ``input`` and ``output`` (names, layout, which axes are
dynamic) and ``producer``.

Exporter choice: torch's dynamo-based exporter (``torch.onnx.export(..., dynamo=True)``, via
``torch.export`` and onnxscript). It traces sizes symbolically, so the patch grid computed from
the input shape stays a formula in the graph and the position-embedding resampling becomes an
ONNX ``Resize`` on the runtime grid. The older TorchScript exporter records Python-side sizes as
constants: with ``dynamic_axes`` on height and width it still produces a graph that fails (or is
wrong) at any size but the traced one. It is also deprecated in torch 2.x. The cost is speed: the
dynamo exporter takes seconds even for a tiny model.

Every export is verified before it is moved into place: onnxruntime runs the file at batch 1 and
3 (and, when the size is dynamic, at a second, non-square size) on seeded random inputs and its
outputs must match vitkit's within ``TOLERANCE`` (relative to the outputs' largest magnitude, at
least 1). The file is written in a temporary folder beside the destination and renamed: a failed
or interrupted export leaves nothing behind. Models over 2 GB keep their weights in a
``<name>.data`` file beside the ``.onnx`` (ONNX's protobuf limit).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vitkit.checkpoints.destination import check_destination
from vitkit.checkpoints.dialect import Dialect, register_dialect
from vitkit.errors import VitkitError
from vitkit.options import Option

INPUT_NAME = "pixel_values"
#: Largest allowed |onnxruntime - vitkit| relative to max(1, largest |vitkit output|).
TOLERANCE = 1e-4
#: Batch sizes every export is run at in onnxruntime before it is kept.
CHECK_BATCHES = (1, 3)
_EXTRA = "pip install 'vitkit[onnx]'"


def require(*modules: str) -> None:
    """A one-line error naming the missing packages of the ``onnx`` extra."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise VitkitError(f"ONNX export needs {', '.join(missing)}: {_EXTRA}")


@dataclass
class OnnxExport:
    """What :func:`export_onnx` wrote and how it was checked."""

    path: str
    #: the graph input's shape, symbolic axes by name: e.g. ``["batch", 3, "height", "width"]``
    input_shape: list
    dynamic_size: bool
    #: the model's resolution: the only one the graph takes when ``dynamic_size`` is False
    image_size: list[int]
    #: why the size is fixed (None when it is dynamic, or was fixed on request)
    fixed_size_reason: str | None
    output: str
    opset: int
    #: one entry per onnxruntime run: batch, height, width, max_abs_diff
    checks: list[dict] = field(default_factory=list)
    max_abs_diff: float | None = None
    seconds: float = 0.0
    bytes_written: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------------- running
def onnxruntime_session(path: str | os.PathLike, *, threads: int | None = None,
                        providers: Sequence[str] | None = None):
    """An ``onnxruntime.InferenceSession`` for an exported file (CPU unless ``providers`` says
    otherwise; ``threads`` sets intra-op threads). What ``vitkit bench`` times."""
    require("onnxruntime")
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise VitkitError(f"{path}: no such file")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only: the session's warnings are not the user's business
    try:
        return ort.InferenceSession(str(path), options, providers=list(providers or ["CPUExecutionProvider"]))
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
        from vitkit.checkpoints.tensor_files import first_line

        raise VitkitError(f"{path}: onnxruntime cannot load it ({first_line(exc)})") from None


def run_onnx(session, images: np.ndarray | torch.Tensor) -> np.ndarray:
    """The graph's output for preprocessed ``images`` (B, 3, H, W); ``session`` may be a path."""
    return run_onnx_outputs(session, images)[0]


def run_onnx_outputs(session, images: np.ndarray | torch.Tensor) -> list[np.ndarray]:
    """Every output of the graph (a backbone's maps, in order) for preprocessed ``images``."""
    if isinstance(session, (str, os.PathLike)):
        session = onnxruntime_session(session)
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    images = np.ascontiguousarray(images, dtype=np.float32)
    return session.run(None, {INPUT_NAME: images})


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``metadata_props`` of an exported file, JSON values decoded (weights are not read)."""
    require("onnx")
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise VitkitError(f"{path}: not an ONNX file ({exc})") from None
    out: dict[str, Any] = {}
    for prop in model.metadata_props:
        try:
            out[prop.key] = json.loads(prop.value)
        except ValueError:
            out[prop.key] = prop.value
    return out


def onnx_inputs(path: str | os.PathLike, images: Sequence[str | os.PathLike]) -> np.ndarray:
    """Image files prepared as the exported file's own metadata says (resize, crop, scale to [0, 1],
    normalise: :mod:`vitkit.data.preprocessing`): the graph's ``pixel_values``."""
    from vitkit.data.images import open_rgb
    from vitkit.data.preprocessing import Preprocessing
    from vitkit.data.transforms import eval_transform

    stored = read_metadata(path).get("preprocessing")
    if not isinstance(stored, dict):
        raise VitkitError(f"{path}: no vitkit preprocessing in its metadata")
    transform = eval_transform(Preprocessing.from_dict(stored))
    return torch.stack([transform(open_rgb(image)) for image in images]).numpy()


# ---------------------------------------------------------------------------------- exporting
def output_names(model: nn.Module) -> list[str]:
    """``logits``, ``features`` (no head), or a backbone's ``feature_<index>`` names."""
    names = getattr(model, "output_names", None)
    if names is not None:
        return list(names)
    return ["logits" if model.config.num_classes else "features"]


def _output_metadata(model: nn.Module, outputs: list[str], width_out: int) -> dict[str, Any]:
    if not hasattr(model, "output_names"):  # a classifier (its feature_info lists what a backbone could give)
        return {"name": outputs[0], "shape": ["batch", width_out],
                "meaning": "class logits (softmax for probabilities), in label_names order"
                if model.config.num_classes else "the image representation y (eq. 4)"}
    return {"names": outputs, "layout": model.output_fmt, "meaning": "backbone feature maps, as feature_info says",
            "feature_info": [{"name": name, **item} for name, item in zip(outputs, model.feature_info, strict=True)]}


def _metadata(model: nn.Module, dynamic: bool, outputs: list[str], width_out: int) -> dict[str, str]:
    from vitkit.version import __version__

    height, width = model.config.image_size
    size = ("dynamic: any multiple of " + str(model.stride)) if dynamic else f"fixed: {height}x{width}"
    return {
        "preprocessing": json.dumps(model.preprocessing.to_dict()),
        "preprocessing_transform": json.dumps(model.preprocessing.to_export_dict()),
        "label_names": json.dumps(model.label_names),
        "architecture": json.dumps(model.config.to_dict()),
        "input": json.dumps({"name": INPUT_NAME, "dtype": "float32", "layout": "NCHW", "channels": "RGB",
                             "batch": "dynamic", "height": size, "width": size,
                             "values": "resized, cropped and normalised as 'preprocessing_transform' says"}),
        "output": json.dumps(_output_metadata(model, outputs, width_out)),
        "producer": json.dumps(f"vitkit {__version__}"),
    }


def _program(model: nn.Module, dynamic: bool, outputs: list[str], opset: int | None):
    """torch's ONNXProgram for ``model``: batch dynamic; height and width too when ``dynamic``."""
    from torch.export import Dim

    stride = model.stride
    rows, cols = (max(n // stride, 2) for n in model.config.image_size)  # a size-1 example axis is pinned to 1
    example = torch.zeros(2, model.config.in_channels, rows * stride, cols * stride)
    axes: dict[int, Any] = {0: Dim("batch", min=1, max=65536)}
    if dynamic:
        axes[2] = stride * Dim("rows", min=1, max=4096 // stride)
        axes[3] = stride * Dim("cols", min=1, max=4096 // stride)
    else:
        example = example[..., : model.config.image_size[0], : model.config.image_size[1]]
    with warnings.catch_warnings(), _quiet_loggers():
        warnings.simplefilter("ignore")
        return torch.onnx.export(model, (example,), dynamo=True, verbose=False, input_names=[INPUT_NAME],
                                 output_names=outputs, dynamic_shapes={"x": axes}, opset_version=opset)


class _quiet_loggers:
    """Silence torch.onnx's registration warnings (e.g. "torchvision is not installed") while exporting."""

    NAMES = ("torch.onnx", "torch.export", "torch._export", "onnxscript")

    def __enter__(self) -> None:
        self.levels = {name: logging.getLogger(name).level for name in self.NAMES}
        for name in self.NAMES:
            logging.getLogger(name).setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        for name, level in self.levels.items():
            logging.getLogger(name).setLevel(level)


def _input_shape(program) -> list:
    shape = program.model.graph.inputs[0].shape
    return [int(d) if isinstance(d, int) else str(d) for d in shape]


def check_cases(model: nn.Module, dynamic: bool) -> list[tuple[int, int, int]]:
    """(batch, height, width) of the verification runs: batch 1 and 3 at the model's size, and
    batch 2 at a larger non-square size when the size is dynamic."""
    height, width = model.config.image_size
    cases = [(batch, height, width) for batch in CHECK_BATCHES]
    if dynamic:
        cases.append((2, height + model.stride, width + 2 * model.stride))
    return cases


@torch.no_grad()
def verify_onnx(model: nn.Module, session, cases: Sequence[tuple[int, int, int]], *,
                seed: int = 0) -> list[dict]:
    """Run ``session`` and ``model`` on the same seeded random inputs; one record per case with
    ``max_abs_diff`` and ``scale`` (the largest |model output|)."""
    generator = torch.Generator().manual_seed(seed)
    records = []
    for batch, height, width in cases:
        x = torch.randn(batch, model.config.in_channels, height, width, generator=generator)
        out = model(x)
        expected = [t.numpy() for t in (out if isinstance(out, (list, tuple)) else [out])]
        try:
            got = run_onnx_outputs(session, x)
        except Exception as exc:  # onnxruntime's own exception types: a graph that cannot run this input
            raise VitkitError(f"onnxruntime cannot run the export on a {batch}x{height}x{width} input "
                              f"({_first_line(exc)}); nothing was written") from None
        if [g.shape for g in got] != [e.shape for e in expected]:
            raise VitkitError(f"onnxruntime returned shapes {[g.shape for g in got]} for a {batch}x{height}x{width} "
                              f"input, the model {[e.shape for e in expected]}")
        records.append({"batch": batch, "height": height, "width": width,
                        "max_abs_diff": max(float(np.abs(g - e).max()) for g, e in zip(got, expected, strict=True)),
                        "scale": max(float(np.abs(e).max()) for e in expected)})
    return records


#: what the exporter reads off a model (any family): sizes, the metadata that travels with it
_NEEDS = ("config", "stride", "preprocessing", "label_names")


def _exportable(model: nn.Module) -> nn.Module:
    if not isinstance(model, nn.Module) or any(not hasattr(model, name) for name in _NEEDS):
        raise VitkitError(f"ONNX export takes a vitkit model, got {type(model).__name__}")
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise VitkitError(f"the model has non-finite weights ({name}); not exporting it")
    tensors = list(model.parameters()) + list(model.buffers())
    if any(t.dtype != torch.float32 or t.device.type != "cpu" for t in tensors):
        model = copy.deepcopy(model).float().cpu()  # the export is float32 on the CPU; leave the caller's model
    return model.eval()


def _move_into_place(folder: Path, name: str, destination: Path) -> int:
    """Rename the files written in ``folder`` beside ``destination``, the .onnx last; bytes moved."""
    written = 0
    for item in sorted(folder.iterdir(), key=lambda p: p.name == name):
        target = destination if item.name == name else destination.parent / item.name
        written += item.stat().st_size
        os.replace(item, target)
    return written


def export_onnx(model: nn.Module, path: str | os.PathLike, *, dynamic_size: bool = True,
                verify: bool = True, opset: int | None = None, overwrite: bool = False) -> OnnxExport:
    """Export ``model`` to the ONNX file ``path`` and check it in onnxruntime (see the module notes).

    An existing ``path`` is replaced only with ``overwrite`` (the rule of
    :func:`vitkit.checkpoints.destination.check_destination`, as for every export).

    ``dynamic_size=False`` asks for a graph fixed at the model's resolution; otherwise the size is
    dynamic where the model traces that way. ``verify=False`` skips the onnxruntime check (the
    default raises :class:`VitkitError`, and writes nothing, when the outputs differ by more than
    ``TOLERANCE``). ``opset`` defaults to the exporter's.
    """
    require("onnx", "onnxscript", *(("onnxruntime",) if verify else ()))
    start = time.perf_counter()
    path = Path(path)
    if path.suffix != ".onnx":
        raise VitkitError(f"{path}: an ONNX file needs a .onnx name")
    if path.is_dir():
        raise VitkitError(f"{path}: is a directory")
    check_destination(path, "onnx", overwrite=overwrite)
    model = _exportable(model)
    outputs = output_names(model)
    output = ", ".join(outputs)
    # a family whose forward decides shapes from the image size in Python (Swin) says so: fixed size
    reason = getattr(model, "fixed_size_graph_reason", None) if dynamic_size else None
    try:
        program = _program(model, dynamic_size and reason is None, outputs, opset)
    except Exception as exc:  # torch.export raises many types (guards, unsupported ops, constraint violations)
        if not dynamic_size or reason is not None:
            raise VitkitError(f"ONNX export failed: {_first_line(exc)}") from None
        reason = f"the graph could not keep the image size symbolic ({_first_line(exc)})"
        try:
            program = _program(model, False, outputs, opset)
        except Exception as again:
            raise VitkitError(f"ONNX export failed: {_first_line(again)}") from None
    dynamic = dynamic_size and reason is None
    program.model.metadata_props.update(_metadata(model, dynamic, outputs, program.model.graph.outputs[0].shape[-1]))
    result = OnnxExport(path=str(path), input_shape=_input_shape(program), dynamic_size=dynamic,
                        image_size=list(model.config.image_size), fixed_size_reason=reason, output=output,
                        opset=int(program.model.opset_imports.get("", 0)))
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not atomic_path: a model over 2 GB records its weights file's name inside the .onnx, so the
    # files are written under their final names in a temporary folder and renamed from there.
    folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        staged = folder / path.name
        program.save(staged)
        if verify:
            result.checks = verify_onnx(model, onnxruntime_session(staged), check_cases(model, dynamic))
            result.max_abs_diff = max(c["max_abs_diff"] for c in result.checks)
            worst = max(result.checks, key=lambda c: c["max_abs_diff"] / max(1.0, c["scale"]))
            if worst["max_abs_diff"] > TOLERANCE * max(1.0, worst["scale"]):
                raise VitkitError(
                    f"onnxruntime's {output} differ from vitkit's by {worst['max_abs_diff']:.3g} at batch "
                    f"{worst['batch']}, {worst['height']}x{worst['width']} (tolerance {TOLERANCE:g} x "
                    f"{max(1.0, worst['scale']):.3g}); nothing was written")
        result.bytes_written = _move_into_place(folder, path.name, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result.seconds = round(time.perf_counter() - start, 3)
    return result


def _first_line(exc: BaseException) -> str:
    from vitkit.checkpoints.tensor_files import first_line

    return first_line(exc)



# ------------------------------------------------------------------------------------ the dialect
def _write(model: nn.Module, path: str | os.PathLike, *, progress: bool = False, **options: Any) -> OnnxExport:
    # save_model and convert have applied the overwrite rule to ``path`` already
    return export_onnx(model, path, overwrite=True, **options)


#: the writer's settings on ``vitkit convert --to onnx``, one definition each
STATIC_SIZE = Option("bool", "fix the graph's image size at the model's resolution (default: dynamic where possible)")
VERIFY = Option("bool", "check the export in onnxruntime against vitkit's logits", flag="--no-verify",
                off_help="skip the onnxruntime check against vitkit's logits")


def report_lines(report: dict[str, Any]) -> list[str]:
    """The graph's input and, for a fixed size, why; the onnxruntime check."""
    height, width = report["image_size"]
    shape = "(" + ", ".join(str(d) for d in report["input_shape"]) + ")"
    if report["dynamic_size"]:
        lines = [f"input pixel_values {shape}: dynamic batch and image size (trained at {height}x{width})"]
    else:
        why = report["fixed_size_reason"] or "--static-size"
        lines = [f"input pixel_values {shape}: dynamic batch, image size fixed at {height}x{width} ({why})"]
    if report["checks"]:
        runs = ", ".join(f"{c['batch']}x{c['height']}x{c['width']}" for c in report["checks"])
        lines.append(f"onnxruntime matches vitkit's {report['output']}: max |difference| "
                     f"{report['max_abs_diff']:.2g} (batch x height x width: {runs})")
    else:
        lines.append("not checked in onnxruntime (--no-verify)")
    return lines


DIALECT = register_dialect(Dialect(
    "onnx", None, "ONNX graph (.onnx), checked in onnxruntime; written only",
    recognise=lambda probe: not probe.is_dir and probe.path.suffix.lower() == ".onnx",
    unreadable="an ONNX export; vitkit writes ONNX but does not read it back "
               "(load the checkpoint it was exported from)",
    save=_write, suffixes=(".onnx",), self_checked=True,
    writer_flags=(("static_size", STATIC_SIZE, False), ("verify", VERIFY, True)),
    writer_options=lambda given: {"dynamic_size": not given["static_size"], "verify": given["verify"]},
    report_lines=report_lines))
