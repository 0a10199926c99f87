#!/usr/bin/env python
"""A clinic's mixed input folder through ``cephalo predict``: the report a clinician acts on.

Builds, from real cephalograms in ``../shared/data`` (never copied into the repository), a folder of
the inputs a clinic actually sends:

* ``h005_8bit.png``: a Hamedan radiograph as is (8-bit PNG);
* ``h010_16bit.tif``: the same kind of image as full-range 16-bit TIFF (values x 257);
* ``h015_12bit_in_16bit.tif``: 12-bit detector values (0..4095) in a 16-bit TIFF, the case that
  used to be read near-black;
* ``i151_dicom12.dcm``: an ISBI 2015 image as a 12-bit DICOM with its own PixelSpacing (0.1 mm);
* ``h020_noisy.png``: a radiograph with added Gaussian noise (sd 12 grey levels);
* ``h025_tiny.png``: a thumbnail (160 x 200 px);
* ``h030_strip.png``: an extreme aspect ratio (a 1340 x 300 px strip cut from a radiograph);
* ``scan_unreadable.png``: a text file saved with an image name;

then runs ``cephalo predict --model MODEL FOLDER --out OUT/report --spacing 0.127 --skip-bad``
(the Hamedan spacing estimate; the DICOM keeps its own) and, with ``--screenshot PNG``, takes a
headless-Chromium screenshot of ``report.html``.

Usage: ``python scripts/clinic_report_demo.py --model CKPT [--out build/clinic_demo] [--screenshot
docs/screenshots/clinic_report_mixed.png]``. Exit status: cephalo's (1 here, as one input is
unreadable and is listed as skipped).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _write_dicom(path: Path, img16: np.ndarray, spacing_mm: float, bits_stored: int) -> None:
    """A minimal Digital X-Ray DICOM (Part 10, explicit little endian) holding ``img16`` (uint16)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = img16.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelSpacing = [spacing_mm, spacing_mm]
    ds.PixelData = np.ascontiguousarray(img16.astype("<u2")).tobytes()
    ds.save_as(str(path), enforce_file_format=True)


def build_inputs(shared: Path, folder: Path) -> list[Path]:
    """Write the mixed input folder (see the module doc); returns the files."""
    import cv2

    from cephalo.imageio import read_image

    ham = shared / "hamedan" / "pictures"
    isbi = shared / "isbi2015" / "RawImage" / "Test1Data"
    if not ham.is_dir() or not isbi.is_dir():
        sys.exit(f"real data not found under {shared} (hamedan/pictures, isbi2015/RawImage/Test1Data)")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    h = {n: read_image(ham / f"{n}.png") for n in ("005", "010", "015", "020", "025", "030")}
    cv2.imwrite(str(folder / "h005_8bit.png"), h["005"])
    cv2.imwrite(str(folder / "h010_16bit.tif"), h["010"].astype(np.uint16) * 257)
    cv2.imwrite(
        str(folder / "h015_12bit_in_16bit.tif"), np.round(h["015"].astype(np.float64) * 4095 / 255).astype(np.uint16)
    )
    i151 = read_image(isbi / "151.jpg")
    _write_dicom(folder / "i151_dicom12.dcm", np.round(i151.astype(np.float64) * 4095 / 255).astype(np.uint16), 0.1, 12)
    noisy = np.clip(h["020"].astype(np.float64) + rng.normal(0, 12, h["020"].shape), 0, 255).astype(np.uint8)
    cv2.imwrite(str(folder / "h020_noisy.png"), noisy)
    cv2.imwrite(str(folder / "h025_tiny.png"), cv2.resize(h["025"], (160, 200), interpolation=cv2.INTER_AREA))
    cv2.imwrite(str(folder / "h030_strip.png"), h["030"][700:1000, :])
    (folder / "scan_unreadable.png").write_text("exported by the PACS viewer: see attachment\n")
    return sorted(folder.iterdir())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, type=Path, help="checkpoint or bundle for cephalo predict")
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=REPO / "build" / "clinic_demo")
    ap.add_argument("--spacing", default="0.127", help="fallback mm/px (Hamedan estimate)")
    ap.add_argument("--screenshot", type=Path, default=None, help="PNG of report.html (headless Chromium)")
    ap.add_argument("--window", default="1400,4200", help="Chromium window size W,H for the screenshot")
    a = ap.parse_args(argv)
    files = build_inputs(a.shared, a.out / "inputs")
    print(f"{len(files)} inputs in {a.out / 'inputs'}: {', '.join(f.name for f in files)}")
    report = a.out / "report"
    if report.exists():
        shutil.rmtree(report)
    cmd = [
        sys.executable,
        "-m",
        "cephalo",
        "predict",
        "--model",
        str(a.model),
        str(a.out / "inputs"),
        "--out",
        str(report),
        "--spacing",
        a.spacing,
        "--skip-bad",
        "--device",
        "cpu",
    ]
    print("$ " + " ".join(cmd))
    rc = subprocess.run(cmd).returncode
    html = report / "report.html"
    if a.screenshot is not None and html.is_file():
        exe = next(
            (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None
        )
        if exe is None:
            print("no chromium on PATH: no screenshot", file=sys.stderr)
        else:
            a.screenshot.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [
                    exe,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--hide-scrollbars",
                    f"--window-size={a.window}",
                    f"--screenshot={a.screenshot.resolve()}",
                    html.resolve().as_uri(),
                ],
                check=True,
                capture_output=True,
            )
            print(f"screenshot: {a.screenshot}")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
