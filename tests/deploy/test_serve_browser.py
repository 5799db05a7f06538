"""``vitkit serve`` as a person uses it (issue 24): a real headless Chromium, driven by Playwright, opens the
page, picks an image, and the test reads the top-1 class the page shows (it must be ``vitkit predict``'s)
and waits for the attention overlay to appear.

The browser is Debian's chromium (``make test`` installs it where apt-get is usable; Playwright cannot
download its own here); without it, or without Playwright, the test skips and says which is missing.
Every wait has a timeout. With ``VITKIT_SERVE_SCREENSHOT=PATH`` the page is also saved to PATH (how
docs/img/serve.png was made: ``VITKIT_SERVE_SCREENSHOT=docs/img/serve.png pytest tests/deploy/test_serve_browser.py``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from servetesting import running_server
from trainutil import tiny_checkpoint

from vitkit import load_model
from vitkit.data.bundled import digits_arrays
from vitkit.deploy.serve import Service
from vitkit.evaluate.predict import predict_images

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
playwright = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install -e '.[dev]')")

WAIT_MS = 60_000


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and Path("/usr/bin/chromium").exists():
        found = "/usr/bin/chromium"
    if found is None:
        pytest.skip("no chromium browser on PATH (make test installs Debian's chromium where apt-get is usable)")
    return found


def _digit(path: Path, index: int = 7) -> Path:
    """One of the bundled digits, drawn at 128 x 128 pixels as a person would upload it."""
    images, _ = digits_arrays()
    Image.fromarray(images[index]).resize((128, 128), Image.Resampling.NEAREST).save(path)
    return path


def test_the_page_shows_predicts_top1_and_the_attention_overlay(tmp_path):
    executable = _chromium()
    model = load_model(tiny_checkpoint() / "model")  # a ViT trained briefly on the digits
    image = _digit(tmp_path / "digit.png")
    (expected,) = predict_images(model, [image], top_k=5)
    with running_server(Service(model)) as url, playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=executable, headless=True, timeout=WAIT_MS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 720})
            page.set_default_timeout(WAIT_MS)
            page.goto(url + "/")
            page.wait_for_function("document.getElementById('about').textContent.includes('classes')")
            page.set_input_files("#file", str(image))
            page.wait_for_function("document.getElementById('top1-label').textContent !== ''")
            assert page.inner_text("#top1-label") == expected["top"][0]["label"]
            shown = float(page.inner_text("#top1-prob").rstrip("%")) / 100
            assert abs(shown - expected["top"][0]["probability"]) <= 5e-5  # the page rounds to 0.01 %
            assert len(page.query_selector_all("#top tr.class-row")) == 5
            page.wait_for_function("document.getElementById('overlay').src.startsWith('data:image/png')"
                                   " && document.getElementById('overlay').complete"
                                   " && document.getElementById('overlay').naturalWidth > 0")
            assert page.is_visible("#overlay") and page.inner_text("#error") == ""
            shot = Path(os.environ.get("VITKIT_SERVE_SCREENSHOT") or tmp_path / "serve.png")
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    with Image.open(shot) as picture:
        assert picture.format == "PNG" and picture.width >= 900
        colours = np.asarray(picture.convert("RGB")).reshape(-1, 3)
        assert len(np.unique(colours[:: max(1, len(colours) // 20000)], axis=0)) > 50  # a drawn page, not blank
