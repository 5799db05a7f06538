"""Checkpoints by name, without a network: a Hugging Face cache laid out as huggingface_hub lays it
out (offline mode on), and a throwaway HTTP server on 127.0.0.1 for URL downloads.

References: transformers' and timm's own models loaded from the same hub cache; the bytes the
server sent (and their SHA-256); the official model written out in numpy for a served ``.npz``.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from clirun import run_cli
from formats_testing import official_vit_forward
from timm_reference import import_timm

import vitkit.checkpoints.hub
import vitkit.cli.finetune
from vitkit import VitkitError, load_model
from vitkit.checkpoints.download import cached_path, download
from vitkit.checkpoints.hub import parse_checkpoint, resolve_checkpoint
from vitkit.checkpoints.vit.pretrained import PRETRAINED

transformers = pytest.importorskip("transformers")
huggingface_hub = pytest.importorskip("huggingface_hub")

COMMIT_A = "a" * 40
COMMIT_B = "b" * 40


# ------------------------------------------------------------------------ a Hugging Face cache
def add_to_hub_cache(cache: Path, repo_id: str, files_from: Path, commit: str, refs: tuple[str, ...] = ("main",)):
    """``files_from``'s files as a snapshot of ``repo_id`` in the layout of huggingface_hub's cache:
    ``models--ORG--NAME/blobs/<hash>``, ``snapshots/<commit>/<file>`` a relative symlink to its blob,
    ``refs/<ref>`` holding the commit hash."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for file in files_from.iterdir():
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        shutil.copyfile(file, repo / "blobs" / digest)
        (snapshot / file.name).symlink_to(Path("..", "..", "blobs", digest))
    for ref in refs:
        (repo / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty hub cache with huggingface_hub's offline mode on, in this process and in children."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads both at import: its module constants are what it consults later.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


def tiny_hf(tmp_path: Path, name: str, seed: int) -> tuple[Path, object]:
    torch.manual_seed(seed)
    config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                    image_size=32, patch_size=8, num_labels=3,
                                    id2label={0: "cat", 1: "dog", 2: "owl"}, label2id={"cat": 0, "dog": 1, "owl": 2})
    reference = transformers.ViTForImageClassification(config).eval()
    reference.save_pretrained(tmp_path / name)
    return tmp_path / name, reference


X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))


def _logits(model, x=X):
    with torch.no_grad():
        return model(x)


def test_hub_name_loads_transformers_weights_from_the_cache_offline(tmp_path, hub_cache):
    folder, _ = tiny_hf(tmp_path, "saved", seed=0)
    add_to_hub_cache(hub_cache, "org/tiny-vit", folder, COMMIT_A)
    # transformers resolves the same name through the same cache on its own: the independent reference
    reference = transformers.ViTForImageClassification.from_pretrained("org/tiny-vit", cache_dir=hub_cache,
                                                                       local_files_only=True).eval()
    for spec in ("hf-hub:org/tiny-vit", "org/tiny-vit"):
        model = load_model(spec)
        torch.testing.assert_close(_logits(model), reference(X).logits.detach(), rtol=0, atol=1e-5)
        assert model.label_names == ["cat", "dog", "owl"]
    assert resolve_checkpoint("hf-hub:org/tiny-vit") == hub_cache / "models--org--tiny-vit" / "snapshots" / COMMIT_A


def test_a_vitmae_repository_loads_its_encoder_and_its_decoder_by_name(tmp_path, hub_cache):
    """``facebook/vit-mae-base``'s layout: a transformers ViTMAEForPreTraining directory on the hub."""
    from vitkit.objectives import load_pretraining

    torch.manual_seed(0)
    config = transformers.ViTMAEConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                       image_size=32, patch_size=8, decoder_hidden_size=16, decoder_num_hidden_layers=1,
                                       decoder_num_attention_heads=2, decoder_intermediate_size=32, mask_ratio=0.75)
    reference = transformers.ViTMAEForPreTraining(config).eval()
    reference.save_pretrained(tmp_path / "mae")
    add_to_hub_cache(hub_cache, "org/tiny-vit-mae", tmp_path / "mae", COMMIT_A)
    model, objective = load_pretraining("org/tiny-vit-mae")
    noise = torch.rand(2, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(pixel_values=X, noise=noise)
        ours = objective.run(model, X, noise=noise)
    torch.testing.assert_close(ours.loss.mean(), expected.loss, rtol=0, atol=1e-5)
    assert load_model("hf-hub:org/tiny-vit-mae").config.num_classes == 0  # the encoder, as a plain ViT


def test_revision_pinning_picks_the_snapshot(tmp_path, hub_cache):
    old, old_ref = tiny_hf(tmp_path, "old", seed=1)
    new, new_ref = tiny_hf(tmp_path, "new", seed=2)
    add_to_hub_cache(hub_cache, "org/vit", old, COMMIT_A, refs=("v1",))
    add_to_hub_cache(hub_cache, "org/vit", new, COMMIT_B, refs=("main",))
    expected_old, expected_new = old_ref(X).logits.detach(), new_ref(X).logits.detach()
    assert not torch.allclose(expected_old, expected_new)
    cases = {"hf-hub:org/vit": expected_new, f"hf-hub:org/vit@{COMMIT_A}": expected_old, "org/vit@v1": expected_old,
             "hf-hub:org/vit@main": expected_new}
    for spec, expected in cases.items():
        torch.testing.assert_close(_logits(load_model(spec)), expected, rtol=0, atol=1e-5, msg=spec)


def test_timm_repository_with_torch_weights_only(tmp_path, hub_cache):
    timm = import_timm()
    from timm.models import save_for_hf

    torch.manual_seed(3)
    reference = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, embed_dim=32,
                                  depth=1, num_heads=2, num_classes=4).eval()
    save_for_hf(reference, str(tmp_path / "timm"), safe_serialization=False)  # pytorch_model.bin + config.json
    assert not list((tmp_path / "timm").glob("*.safetensors"))
    add_to_hub_cache(hub_cache, "timm/tiny_vit.test", tmp_path / "timm", COMMIT_A)
    model = load_model("hf-hub:timm/tiny_vit.test")
    torch.testing.assert_close(_logits(model), _logits(reference), rtol=0, atol=1e-5)


def test_hub_errors_are_one_line(tmp_path, hub_cache, capsys):
    with pytest.raises(VitkitError, match="HF_HUB_OFFLINE is set and it is not in the Hugging Face cache"):
        resolve_checkpoint("hf-hub:org/absent")
    with pytest.raises(VitkitError, match=r"^org/absent: no such file or directory; as a Hugging Face Hub name"):
        resolve_checkpoint("org/absent")
    with pytest.raises(VitkitError, match="not a Hugging Face Hub repository id"):
        resolve_checkpoint("hf-hub:org/bad--name")
    code, _, err = run_cli(["convert", "hf-hub:org/absent", str(tmp_path / "x.npz"), "--to", "jax"], capsys)
    assert code == 2 and err.count("\n") == 1 and "pass a local directory instead" in err


def test_cli_commands_take_hub_names(tmp_path, hub_cache, capsys, monkeypatch):
    folder, reference = tiny_hf(tmp_path, "saved", seed=4)
    add_to_hub_cache(hub_cache, "org/tiny-vit", folder, COMMIT_A)
    code, out, err = run_cli(["convert", "hf-hub:org/tiny-vit", str(tmp_path / "t.npz"), "--to", "jax",
                           "--no-progress"], capsys)
    assert code == 0, err
    torch.testing.assert_close(_logits(load_model(tmp_path / "t.npz")), reference(X).logits.detach(),
                               rtol=0, atol=1e-5)
    seen = {}
    monkeypatch.setattr(vitkit.cli.finetune, "run_training", lambda args, recipe: seen.update(vars(args)) or {})
    code, out, err = run_cli(["finetune", "hf-hub:org/tiny-vit", "--data", "digits"], capsys)
    assert code == 0, err
    assert seen["checkpoint"] == "hf-hub:org/tiny-vit"  # the run's config.yaml keeps the name as written


# ------------------------------------------------------------------------- names, no network
def test_local_paths_win_and_names_are_told_apart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org").mkdir()
    (tmp_path / "org" / "repo").mkdir()
    assert parse_checkpoint("org/repo").kind == "path"  # an existing path always wins
    assert parse_checkpoint("other/repo").target == "other/repo" and parse_checkpoint("other/repo").kind == "hub"
    assert parse_checkpoint("org/repo@v2").revision == "v2"
    assert parse_checkpoint("weights/model.safetensors").kind == "path"  # a file name, never a repository
    assert parse_checkpoint("timm/vit_base_patch16_224.augreg2_in21k_ft_in1k").kind == "hub"
    spec = parse_checkpoint("official:imagenet21k/ViT-B_16")
    assert spec.kind == "url" and spec.target == "https://storage.googleapis.com/vit_models/imagenet21k/ViT-B_16.npz"
    assert parse_checkpoint("official:augreg/B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0.npz").target \
        == ("https://storage.googleapis.com/vit_models/augreg/"
            "B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0.npz")
    assert parse_checkpoint("gs://vit_models/imagenet21k+imagenet2012/ViT-L_16.npz").target == \
        "https://storage.googleapis.com/vit_models/imagenet21k+imagenet2012/ViT-L_16.npz"
    digest = "0" * 64
    assert parse_checkpoint(f"official:sam/ViT-B_16#sha256={digest}").sha256 == digest


@pytest.mark.parametrize("spec, message", [
    ("ViT-B_16", "--model ViT-B/16` builds it randomly initialised; its pretrained weights are spelled like "
                 "official:imagenet21k/ViT-B_16"),
    ("ViT-S/16", "ViT-S/16 is a model variant"),
    ("official:imagenet21k/ViT-B_17", "not a published file of gs://vit_models/imagenet21k"),
    ("official:nowhere/ViT-B_16", "FOLDER one of imagenet21k"),
    ("http://example.com/w.npz", "plain http is accepted only from this machine"),
    ("ftp://example.com/w.npz", "not an https URL"),
    ("https://example.com/w.npz#sha256=beef", "64 hex digits"),
    ("missing.npz", "no such file or directory"),
])
def test_bad_names_are_one_line_errors(spec, message):
    with pytest.raises(VitkitError) as info:
        resolve_checkpoint(spec)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_every_listed_name_parses_to_its_published_location():
    assert {p.source for p in PRETRAINED} == {"official bucket", "HF Hub, transformers", "HF Hub, timm"}
    for p in PRETRAINED:
        spec = parse_checkpoint(p.name)
        if p.source == "official bucket":
            assert spec.target == p.location.replace("gs://", "https://storage.googleapis.com/")
        else:
            assert spec.kind == "hub" and p.location == f"https://huggingface.co/{spec.target}"
        assert p.resolution in (224, 384)


def test_models_pretrained_lists_names_with_source_and_resolution(capsys):
    code, out, _ = run_cli(["models", "--pretrained", "--json"], capsys)
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out.strip().splitlines()[-1])["pretrained"]}
    row = rows["official:imagenet21k+imagenet2012/ViT-B_16"]
    assert (row["resolution"], row["classes"], row["source"]) == (384, 1000, "official bucket")
    assert rows["hf-hub:google/vit-base-patch16-224"]["resolution"] == 224
    assert any(line.endswith("official:imagenet21k/ViT-H_14") and " 224 " in line for line in out.splitlines())
    code, _, err = run_cli(["models", "--pretrained", "no-such-thing"], capsys)
    assert code == 2 and "no pretrained name matches" in err


# ----------------------------------------------------------------- URL downloads on 127.0.0.1
class FileServer:
    """A throwaway HTTP server on 127.0.0.1: ``files`` by path, GETs counted per path, and paths in
    ``cut`` answered with their full Content-Length but only half the body before the connection closes."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.gets: dict[str, int] = {}
        self.cut: set[str] = set()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server API)
                server.gets[self.path] = server.gets.get(self.path, 0) + 1
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path in server.cut:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("VITKIT_CACHE", str(tmp_path / "vitkit-cache"))
    s = FileServer()
    yield s
    s.close()


def _files_in(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_download_once_then_from_the_cache(server, tmp_path):
    payload = bytes(range(256)) * 4096  # 1 MiB
    server.files["/w/model.bin"] = payload
    url = server.url + "/w/model.bin"
    first = download(url, progress=False)
    assert first.read_bytes() == payload and first == cached_path(url)
    record = json.loads((first.parent / "download.json").read_text())
    assert record["sha256"] == hashlib.sha256(payload).hexdigest() and record["size"] == len(payload)
    assert download(url, sha256=hashlib.sha256(payload).hexdigest(), progress=False) == first
    assert server.gets["/w/model.bin"] == 1
    assert first.is_relative_to(tmp_path / "vitkit-cache")


def test_sha256_mismatch_is_an_error_and_nothing_is_cached(server, tmp_path):
    server.files["/x.npz"] = b"weights" * 1000
    with pytest.raises(VitkitError, match="SHA-256 of the download is .* expected 0{64}; nothing was cached"):
        resolve_checkpoint(f"{server.url}/x.npz#sha256={'0' * 64}")
    assert _files_in(tmp_path / "vitkit-cache") == []


def test_interrupted_download_leaves_nothing_in_the_cache(server, tmp_path):
    server.files["/big.npz"] = b"\x01" * 300_000
    server.cut.add("/big.npz")
    with pytest.raises(VitkitError, match=r"could not download .*big\.npz \(connection closed after 150000 of 300000 "
                                          r"bytes\); pass a local file instead"):
        download(server.url + "/big.npz", progress=False)
    assert _files_in(tmp_path / "vitkit-cache") == []
    server.cut.clear()
    assert download(server.url + "/big.npz", progress=False).read_bytes() == b"\x01" * 300_000


def test_a_damaged_cached_file_is_detected_and_fetched_again(server):
    payload = b"0123456789" * 1000
    server.files["/f.bin"] = payload
    path = download(server.url + "/f.bin", progress=False)
    path.write_bytes(b"X" + payload[1:])  # same size, one byte changed
    with pytest.warns(UserWarning, match="cached download is damaged .*SHA-256 changed"):
        again = download(server.url + "/f.bin", progress=False)
    assert again.read_bytes() == payload and server.gets["/f.bin"] == 2
    path.write_bytes(payload[:100])  # truncated
    with pytest.warns(UserWarning, match="100 bytes where 10000 were downloaded"):
        assert download(server.url + "/f.bin", progress=False).read_bytes() == payload
    assert server.gets["/f.bin"] == 3


def test_unreachable_network_and_missing_files_are_one_line_errors(server):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with pytest.raises(VitkitError) as info:
        download(f"http://127.0.0.1:{closed}/w.npz", progress=False)
    message = str(info.value)
    assert "could not download" in message and "pass a local file instead" in message and "\n" not in message
    with pytest.raises(VitkitError, match=r"\(HTTP 404 Not Found\); pass a local file instead"):
        download(server.url + "/absent.npz", progress=False)


def _official_npz() -> tuple[bytes, dict[str, np.ndarray]]:
    """A tiny ViT in the official vit_jax naming (random numbers)."""
    rng = np.random.default_rng(0)
    d, mlp, heads, patch, classes, grid = 16, 32, 2, 8, 3, 2
    p = {"embedding/kernel": (patch, patch, 3, d), "embedding/bias": (d,), "cls": (1, 1, d),
         "Transformer/posembed_input/pos_embedding": (1, grid * grid + 1, d),
         "Transformer/encoder_norm/scale": (d,), "Transformer/encoder_norm/bias": (d,),
         "head/kernel": (d, classes), "head/bias": (classes,)}
    block = "Transformer/encoderblock_0/"
    attn = block + "MultiHeadDotProductAttention_1/"
    for n in ("query", "key", "value"):
        p[f"{attn}{n}/kernel"], p[f"{attn}{n}/bias"] = (d, heads, d // heads), (heads, d // heads)
    p[attn + "out/kernel"], p[attn + "out/bias"] = (heads, d // heads, d), (d,)
    for ln in ("LayerNorm_0", "LayerNorm_2"):
        p[f"{block}{ln}/scale"], p[f"{block}{ln}/bias"] = (d,), (d,)
    p[block + "MlpBlock_3/Dense_0/kernel"], p[block + "MlpBlock_3/Dense_0/bias"] = (d, mlp), (mlp,)
    p[block + "MlpBlock_3/Dense_1/kernel"], p[block + "MlpBlock_3/Dense_1/bias"] = (mlp, d), (d,)
    params = {k: rng.normal(size=shape).astype(np.float32) * 0.3 for k, shape in p.items()}
    buffer = io.BytesIO()
    np.savez(buffer, **params)
    return buffer.getvalue(), params


def test_official_name_downloads_from_the_bucket_and_matches_the_official_model(server, monkeypatch):
    body, params = _official_npz()
    server.files["/vit_models/imagenet21k/ViT-B_16.npz"] = body
    # the bucket, served locally
    monkeypatch.setattr(vitkit.checkpoints.hub, "OFFICIAL_URL", server.url + "/vit_models")
    model = load_model(f"official:imagenet21k/ViT-B_16#sha256={hashlib.sha256(body).hexdigest()}")
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    expected = official_vit_forward(params, x.permute(0, 2, 3, 1).numpy())
    np.testing.assert_allclose(_logits(model, x).numpy(), expected, rtol=0, atol=2e-5)
    load_model("official:imagenet21k/ViT-B_16")
    assert server.gets["/vit_models/imagenet21k/ViT-B_16.npz"] == 1
