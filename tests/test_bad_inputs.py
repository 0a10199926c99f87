"""Clear errors at the edges: unreadable images and checkpoints say what the file holds, in one
line naming it, without a decoder library's internals or torch's ``weights_only=False`` advice."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from cephalo.errors import CheckpointError, DataError
from cephalo.imageio import describe_file, read_image, read_input_image, sniff_format
from helpers import REPO

#: what must never reach the user
LEAKS = (
    "SimpleITK",
    "itk::",
    "ImageIO",
    "Exception thrown",
    "weights_only",
    "PytorchStreamReader",
    "miniz",
    "Traceback",
    "cv2",
    "pydicom",
    "force=True",
)

BAD_IMAGES = {
    "empty.png": (b"", "an empty file (0 bytes)"),
    "notes.png": (b"patient 12: lateral ceph, see report\n", "a text file, not an image (starts with 'patient 12"),
    "notes.dcm": (b"# DICOM export failed\nretry later\n", "a text file, not an image"),
    "blob.png": (bytes(range(7, 200)) * 3, "an unknown format (first bytes 07 08 09 0a 0b 0c 0d 0e); expected PNG"),
    "blob.tif": (b"\x01\x02\x03\x04" * 50, "an unknown format"),
    "fake.bmp": (b"II*\x00" + b"\x00" * 60, "a TIFF file (64 bytes) that cannot be decoded"),
}


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_unreadable_images_say_what_was_found(tmp_path, name):
    data, said = BAD_IMAGES[name]
    p = tmp_path / name
    p.write_bytes(data)
    for reader in (read_image, read_input_image):
        with pytest.raises(DataError) as e:
            reader(p)
        msg = str(e.value)
        assert msg.startswith(f"{p}: cannot read") and said in msg, msg
        assert "\n" not in msg and not any(leak in msg for leak in LEAKS), msg


def test_sniff_and_describe(tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((4, 5), np.uint8))
    (tmp_path / "a.jpg").write_bytes((tmp_path / "a.png").read_bytes())  # a PNG named .jpg
    assert sniff_format(tmp_path / "a.png") == sniff_format(tmp_path / "a.jpg") == "PNG"
    assert read_image(tmp_path / "a.jpg").shape == (4, 5)  # the content decides, not the name
    dcm = tmp_path / "x"
    dcm.write_bytes(b"\x00" * 128 + b"DICM" + b"\x00" * 10)
    assert sniff_format(dcm) == "DICOM"
    assert describe_file(dcm).startswith("a DICOM file (142 bytes) that cannot be decoded")
    with pytest.raises(DataError, match=r"cannot read image: a DICOM file \(142 bytes\) that cannot be decoded"):
        read_input_image(dcm)


def test_cli_predict_text_png_is_one_line(tmp_path):
    """The whole way through the console script: one line on stderr, exit 1."""
    bad = tmp_path / "scan.png"
    bad.write_text("not an image\n")
    ckpt = tmp_path / "model.pt"
    ckpt.write_text("also not a checkpoint\n")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "cephalo",
            "predict",
            "--model",
            str(ckpt),
            str(bad),
            "--out",
            str(tmp_path / "out"),
            "--params",
            str(REPO / "params.yaml"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0, r.stderr
    # inputs are checked before the model is loaded (fail fast): the image is named first
    assert "scan.png" in r.stderr and "a text file" in r.stderr and "model.pt" not in r.stderr
    assert not any(leak in r.stderr for leak in LEAKS), r.stderr
    import cv2
    import numpy as np

    good = tmp_path / "ok.png"
    cv2.imwrite(str(good), np.zeros((8, 8), np.uint8))
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "cephalo",
            "predict",
            "--model",
            str(ckpt),
            str(good),
            "--out",
            str(tmp_path / "out"),
            "--params",
            str(REPO / "params.yaml"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "model.pt" in r.stderr and "not a checkpoint: a text file" in r.stderr
    assert not any(leak in r.stderr for leak in LEAKS), r.stderr


# ---------------------------------------------------------------------- checkpoints
def _good_checkpoint(path):
    import torch

    torch.save({"model_state_dict": torch.nn.Linear(4, 4).state_dict(), "pad": torch.zeros(2000)}, path)
    return path.read_bytes()


@pytest.mark.parametrize(
    "kind,said",
    [
        ("text", "not a checkpoint: a text file (starts with 'version https://git-lfs"),
        ("empty", "an empty file (0 bytes), not a checkpoint"),
        ("truncated", "not a valid checkpoint: its zip archive"),
        ("noise", "not a PyTorch checkpoint (unknown format"),
    ],
)
def test_invalid_checkpoint_says_so_without_weights_only_advice(tmp_path, kind, said):
    from cephalo.models import load_model, read_checkpoint

    p = tmp_path / "best.pt"
    good = _good_checkpoint(tmp_path / "good.pt")
    p.write_bytes(
        {
            "text": b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\n",
            "empty": b"",
            "truncated": good[: len(good) // 2],
            "noise": np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes(),
        }[kind]
    )
    for fn in (read_checkpoint, load_model):
        with pytest.raises(CheckpointError) as e:
            fn(p)
        msg = str(e.value)
        assert msg.startswith(f"{p}: ") and said in msg, msg
        assert "\n" not in msg and not any(leak in msg for leak in LEAKS), msg
