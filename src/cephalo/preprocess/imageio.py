"""Decode a cephalogram into one greyscale array, keeping its bit depth.

PNG/JPEG/BMP/TIFF go through OpenCV (``IMREAD_UNCHANGED``, so 16-bit PNG/TIFF stay
uint16); DICOM (``.dcm``/``.dicom`` or a file OpenCV cannot read) through SimpleITK.
Colour images become grey (if the three channels are equal the first one is used
as is; otherwise ITU-R BT.601 luma via ``cv2.cvtColor``). No 8-bit truncation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError

__all__ = ["read_image", "image_bit_depth"]

_DICOM_SUFFIXES = {".dcm", ".dicom"}


def _to_grey(img: np.ndarray, path: Path) -> np.ndarray:
    import cv2

    if img.ndim == 2:
        return img
    if img.ndim == 3 and img.shape[2] == 1:
        return img[:, :, 0]
    if img.ndim == 3 and img.shape[2] in (3, 4):
        rgb = img[:, :, :3]
        if np.array_equal(rgb[:, :, 0], rgb[:, :, 1]) and np.array_equal(rgb[:, :, 0], rgb[:, :, 2]):
            return np.ascontiguousarray(rgb[:, :, 0])
        return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_BGR2GRAY)
    raise DataError(f"unsupported image shape {img.shape}", path)


def _to_unsigned(img: np.ndarray, path: Path) -> np.ndarray:
    """uint8/uint16 as they are; other integer data that fits uint16 -> uint16; else DataError."""
    if img.dtype in (np.uint8, np.uint16):
        return img
    if img.dtype.kind in "iu":
        lo, hi = int(img.min()), int(img.max())
        if lo < 0:
            img = img.astype(np.int64) - lo  # e.g. signed DICOM: shift to 0
            hi -= lo
        if hi <= 65535:
            return img.astype(np.uint16)
        raise DataError(f"integer image values up to {hi} do not fit 16 bits", path)
    raise DataError(f"unsupported image dtype {img.dtype} (expected 8- or 16-bit integers)", path)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as ``(H, W)`` uint8 or uint16 greyscale (original pixels).

    Raises:
        DataError: missing/unreadable file, or an unsupported pixel format.
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise DataError("image file not found", path)
    img = None
    if path.suffix.lower() not in _DICOM_SUFFIXES:
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        try:
            import SimpleITK as sitk

            arr = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        except Exception as e:  # noqa: BLE001 - any reader failure is bad input
            raise DataError(f"cannot decode image ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})", path) from None
        arr = np.asarray(arr)
        if arr.ndim == 3 and arr.shape[0] == 1:  # (1, H, W) single frame
            arr = arr[0]
        img = arr
    img = _to_grey(np.asarray(img), path)
    if img.size == 0:
        raise DataError("empty image", path)
    return _to_unsigned(img, path)


def image_bit_depth(path: str | Path) -> int:
    """8 or 16, read from the file header where Pillow can (no full decode); else by decoding."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
                return 16
            if im.mode in ("L", "RGB", "RGBA", "P", "LA", "1"):
                return 8
    except Exception:  # noqa: BLE001 - fall back to a full decode
        pass
    return 16 if read_image(path).dtype == np.uint16 else 8
