"""``vitkit serve`` through an HTTP client, as programs use it (issue 24): a real server on 127.0.0.1, the
JSON API giving ``vitkit predict``'s probabilities, bad uploads answered with one-line 4xx errors while the
server keeps serving, 20 concurrent clients never running more forwards than allowed, Ctrl-C and a port
in use from the command line. Every request and every wait is bounded by a timeout."""

from __future__ import annotations

import base64
import io
import os
import re
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from clirun import run_fails
from formats_testing import randomised
from PIL import Image
from servetesting import HOST, bomb_png, good_images, png_bytes, running_server

from vitkit import create_model, save_native
from vitkit.deploy.serve import Service
from vitkit.evaluate.predict import predict_images
from vitkit.objectives.mae import MAE

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

TIMEOUT = httpx.Timeout(60.0)
LABELS = ["cat", "dog", "emu", "fox"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
    [str(Path(__file__).resolve().parents[2] / "src"), os.environ.get("PYTHONPATH", "")])}


def _model(**overrides):
    model = randomised(create_model("ViT-Ti/16", depth=1, image_size=32, hidden_size=32, num_heads=2, mlp_dim=64,
                                    num_classes=len(LABELS), **overrides))
    model.label_names = list(LABELS)
    return model


@pytest.fixture(scope="module")
def served():
    """(base URL, the service, its model): ViT, two forwards at once, uploads up to 1 MiB."""
    model = _model()
    service = Service(model, max_concurrent=2, max_upload_mb=1)
    with running_server(service) as url:
        yield url, service, model


def _post(url: str, route: str, data: bytes, name: str = "image.png", kind: str = "image/png", **params):
    return httpx.post(f"{url}{route}", files={"file": (name, data, kind)}, params=params, timeout=TIMEOUT)


def test_health_and_the_page(served):
    url, _, _ = served
    health = httpx.get(f"{url}/health", timeout=TIMEOUT).json()
    assert (health["status"], health["family"], health["num_classes"], health["attention"],
            health["max_concurrent"], health["max_upload_mb"]) == ("ok", "vit", 4, "rollout", 2, 1.0)
    page = httpx.get(url, timeout=TIMEOUT)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"] and 'id="file"' in page.text


@pytest.mark.parametrize("name", ["rgb.png", "gray16.png", "cmyk.jpg", "animated.gif"])
def test_predict_gives_vitkit_predicts_probabilities(served, tmp_path, name):
    url, _, model = served
    path = good_images(tmp_path)[name]
    (expected,) = predict_images(model, [path], top_k=3)
    for response in (_post(url, "/predict", path.read_bytes(), name, top_k=3),
                     httpx.post(f"{url}/predict", content=path.read_bytes(), params={"top_k": 3},
                                headers={"content-type": "application/octet-stream"}, timeout=TIMEOUT)):
        assert response.status_code == 200, response.text
        top = response.json()["top"]
        assert [t["label"] for t in top] == [t["label"] for t in expected["top"]]
        for mine, theirs in zip(top, expected["top"], strict=True):
            assert abs(mine["probability"] - theirs["probability"]) <= 1e-6


@pytest.mark.parametrize("data, kind, status, message", [
    (b"", "image/png", 400, r"^image\.png: empty upload \(zero bytes\)$"),
    (b"hello, not an image", "image/png", 400, r"^image\.png: not a readable image \(UnidentifiedImageError"),
    (png_bytes()[:300], "image/png", 400, r"^image\.png: not a readable image \(OSError: image file is truncated"),
    (bomb_png(), "image/png", 400, r"^image\.png: 10000x10000 = 100,000,000 pixels exceeds the limit .*decompression"),
    (b"\0" * (2 << 20), "image/png", 413, r"^upload over the limit of 1 MiB \(--max-upload-mb\)$"),
], ids=["zero bytes", "not an image", "truncated", "decompression bomb", "over the size limit"])
def test_bad_uploads_are_one_line_4xx_errors_and_the_server_keeps_serving(served, data, kind, status, message):
    url, _, _ = served
    response = _post(url, "/predict", data, kind=kind)
    assert response.status_code == status
    error = response.json()["error"]
    assert re.search(message, error) and "\n" not in error and set(response.json()) == {"error"}
    assert _post(url, "/predict", png_bytes()).status_code == 200  # still serving


def test_wrong_content_type_and_a_streamed_oversized_body(served):
    url, _, _ = served
    wrong = httpx.post(f"{url}/predict", json={"image": "cat.png"}, timeout=TIMEOUT)
    assert wrong.status_code == 415 and "content type 'application/json' is not an image" in wrong.json()["error"]
    form = httpx.post(f"{url}/predict", data={"image": "x"}, files={"other": ("a.png", png_bytes(), "image/png")},
                      timeout=TIMEOUT)
    assert form.status_code == 400 and form.json()["error"] == "the form has no 'file' field holding an image"

    def chunks():  # no Content-Length: the limit holds while the body streams in
        for _ in range(40):
            yield b"\0" * (64 << 10)

    streamed = httpx.post(f"{url}/predict", content=chunks(), headers={"content-type": "image/png"}, timeout=TIMEOUT)
    assert streamed.status_code == 413
    bad_k = _post(url, "/predict", png_bytes(), top_k=0)
    assert bad_k.status_code == 400 and bad_k.json()["error"].startswith("top_k: got 0")
    assert httpx.get(f"{url}/health", timeout=TIMEOUT).status_code == 200


def test_twenty_concurrent_clients_never_run_more_forwards_than_allowed(served):
    url, service, _ = served
    before = service.forwards
    images = [png_bytes(seed) for seed in range(4)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        futures = [pool.submit(_post, url, "/predict", images[i % 4], f"{i}.png") for i in range(20)]
        responses = [f.result(timeout=120) for f in futures]
    assert [r.status_code for r in responses] == [200] * 20
    for i, response in enumerate(responses):  # each client got its own image's answer
        assert response.json() == responses[i % 4].json() | {"name": f"{i}.png"}
    health = httpx.get(f"{url}/health", timeout=TIMEOUT).json()
    assert health["forwards"] - before == 20 and health["in_flight"] == 0
    assert 1 <= health["peak_in_flight"] <= 2  # --max-concurrent 2


def test_attention_overlay_is_a_png_over_the_seen_crop(served):
    url, _, _ = served
    response = _post(url, "/attention", png_bytes())
    assert response.status_code == 200
    body = response.json()
    picture = Image.open(io.BytesIO(base64.b64decode(body["overlay"].split(",", 1)[1])))
    assert body["kind"] == "rollout" and picture.format == "PNG" and min(picture.size) >= 224
    assert len(body["map"]) == 2 and abs(sum(map(sum, body["map"])) - 1) < 1e-4  # 2x2 patches, a distribution


def test_swin_draws_window_attention_and_bit_has_none():
    swin = Service(randomised(create_model("Swin-T", image_size=32, embed_dim=16, depths=(2, 2), num_heads=(2, 2),
                                           window_size=4, num_classes=3)))
    out = swin.attention(png_bytes(), "a.png", stage=1)
    assert out["kind"] == "window" and out["overlay"].startswith("data:image/png;base64,")
    with pytest.raises(Exception, match=r"stage 2 is out of range: this model has 2 stages"):
        swin.attention(png_bytes(), "a.png", stage=2)
    bit = Service(create_model("BiT-R26x1", base_width=16, num_groups=4, image_size=32, num_classes=3))
    with pytest.raises(Exception, match=r"a bit model has no attention overlay to draw"):
        bit.attention(png_bytes(), "a.png")


def test_mae_reconstruction_at_a_chosen_mask_ratio():
    model = randomised(create_model("ViT-Ti/16", depth=1, image_size=32, patch_size=8, hidden_size=32, num_heads=2,
                                    mlp_dim=64, num_classes=0))
    service = Service(model, objective=MAE(model.config))
    with running_server(service) as url:
        assert httpx.get(f"{url}/health", timeout=TIMEOUT).json()["reconstruction"] is True
        half, most = (_post(url, "/reconstruct", png_bytes(), mask_ratio=r).json() for r in (0.5, 0.75))
        assert (half["mask_ratio"], most["mask_ratio"]) == (0.5, 0.75)

        def grey_patches(result) -> int:  # masked 8x8 patches are painted one flat grey
            masked = Image.open(io.BytesIO(base64.b64decode(result["masked"].split(",", 1)[1]))).convert("L")
            tiles = [masked.crop((c * 8, r * 8, c * 8 + 8, r * 8 + 8)).getextrema() for r in range(4) for c in range(4)]
            return sum(low == high for low, high in tiles)

        assert (grey_patches(half), grey_patches(most)) == (8, 12)  # 16 patches: int(16 * 0.5), int(16 * 0.75)
        bad = _post(url, "/reconstruct", png_bytes(), mask_ratio=1.5)
        assert bad.status_code == 400 and bad.json()["error"].startswith("mask_ratio: got 1.5")
        no_head = _post(url, "/predict", png_bytes())
        assert no_head.status_code == 400 and "no classification head" in no_head.json()["error"]


# ------------------------------------------------------------------------------------- command line
def test_ctrl_c_stops_the_server_cleanly(tmp_path):
    save_native(_model(), tmp_path / "ckpt")
    proc = subprocess.Popen([sys.executable, "-m", "vitkit", "serve", str(tmp_path / "ckpt"), "--port", "0"],
                            env=ENV, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline()  # the process prints it once it accepts connections
        url = re.search(r"at (http://127\.0\.0\.1:\d+/)", line).group(1)
        assert httpx.get(f"{url}health", timeout=TIMEOUT).json()["status"] == "ok"
        assert _post(url.rstrip("/"), "/predict", png_bytes()).status_code == 200
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
    lines = [x for x in err.splitlines() if x.strip()]
    assert proc.returncode == 130 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0] == (f"vitkit serve: stopped: the server at {url} stopped after answering the requests in flight "
                        f"(1 forward pass(es) served)")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}health", timeout=5)


def test_a_port_in_use_is_a_one_line_error(tmp_path, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        line = run_fails(capsys, ["serve", str(tmp_path / "never-loaded"), "--port", str(port)])
    assert line == (f"vitkit serve: error: cannot listen on 127.0.0.1:{port}: Address already in use: "
                    f"pick another --port")
