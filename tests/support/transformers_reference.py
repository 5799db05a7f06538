"""Hugging Face transformers as a test reference (its own ViT and BiT models)."""

from __future__ import annotations

import pytest


def import_transformers():
    """``transformers``; fails (never skips) when it is missing: ``make test`` installs it with the dev
    extras, and a parity test that silently skips would prove nothing."""
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - a broken dev install
        pytest.fail(f"transformers is needed as a reference (pip install -e '.[dev]'): {exc}")
    return transformers


def assert_pipeline_gives_vitkit_predict(model, directory, paths: list[str], top_k: int) -> list[dict[str, float]]:
    """transformers' ``pipeline("image-classification")`` on the hf export ``directory`` (local files only)
    gives ``vitkit predict``'s probabilities of ``model`` to 1e-4 for each of ``paths``, for the same
    ``top_k`` labels; returns vitkit's {label: probability} of each image."""
    from vitkit.evaluate.predict import predict_images

    transformers = import_transformers()
    # what pipeline("image-classification", model=DIRECTORY) loads, from the directory only
    peer = transformers.AutoModelForImageClassification.from_pretrained(str(directory), local_files_only=True)
    processor = transformers.AutoImageProcessor.from_pretrained(str(directory), local_files_only=True)
    classify = transformers.pipeline("image-classification", model=peer, image_processor=processor, device="cpu")
    ours = [{r["label"]: r["probability"] for r in row["top"]} for row in predict_images(model, paths, top_k=top_k)]
    for path, mine in zip(paths, ours, strict=True):
        theirs = {r["label"]: r["score"] for r in classify(path, top_k=top_k)}
        assert set(theirs) == set(mine) and len(mine) == top_k, (path, theirs, mine)
        for label, probability in mine.items():
            assert abs(theirs[label] - probability) <= 1e-4, (path, label, theirs[label], probability)
    return ours
