"""Decode a cephalogram into one greyscale array, keeping its bit depth.

PNG/JPEG/BMP/TIFF go through OpenCV (``IMREAD_UNCHANGED``, so 16-bit PNG/TIFF stay
uint16); DICOM (``.dcm``/``.dicom`` or a file OpenCV cannot read) through SimpleITK.
Colour images become grey (if the three channels are equal the first one is used
as is; otherwise ITU-R BT.601 luma via ``cv2.cvtColor``; an alpha channel is ignored).
No 8-bit truncation.

Reliability rules (shared with the index's header read, ``cephalo.datasets.base.image_header``):

* A truncated PNG/JPEG/BMP (no ``IEND`` chunk, no JPEG end-of-image marker, fewer pixel bytes
  than the BMP header promises) is a :class:`~cephalo.errors.DataError` naming the file --
  never a silently grey-filled image (libjpeg and SimpleITK decode truncated files "fine").
* The EXIF orientation tag (274) is APPLIED, in the header size (:func:`oriented_size`) and in
  the pixels (:func:`read_image`), as image viewers and LabelMe do: width/height in the index
  always describe the pixels preprocessing reads, in the frame annotators saw.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError

__all__ = ["read_image", "image_bit_depth", "check_complete", "exif_orientation", "oriented_size",
           "apply_exif_orientation"]

_DICOM_SUFFIXES = {".dcm", ".dicom"}


def check_complete(path: str | Path, head: bytes | None = None) -> None:
    """Raise if a PNG, JPEG or BMP file is truncated (cheap: reads the header and the last bytes).

    Checks: PNG ends with an ``IEND`` chunk; JPEG holds the end-of-image marker ``FFD9`` in
    its last 4 KiB (markers cannot occur inside entropy-coded data); an uncompressed BMP is at
    least ``pixel offset + rows x padded row bytes`` long (else its ``bfSize``). Other formats
    pass (their decoders fail on truncation).

    Raises:
        DataError: the file is truncated or unreadable, naming it.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(64)
            f.seek(max(0, size - 4096))
            tail = f.read()
    except OSError as e:
        raise DataError(f"cannot read image ({e.strerror})", path) from None
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        if b"IEND" not in tail[-64:]:
            raise DataError("truncated PNG (no IEND chunk at the end of the file)", path)
    elif head.startswith(b"\xff\xd8"):
        if b"\xff\xd9" not in tail:
            raise DataError("truncated JPEG (no end-of-image marker FFD9)", path)
    elif head.startswith(b"BM") and len(head) >= 34:
        bf_size = int.from_bytes(head[2:6], "little")
        offset = int.from_bytes(head[10:14], "little")
        header_size = int.from_bytes(head[14:18], "little")
        need = bf_size
        if header_size >= 40:
            w = int.from_bytes(head[18:22], "little", signed=True)
            h = int.from_bytes(head[22:26], "little", signed=True)
            bpp = int.from_bytes(head[28:30], "little")
            compression = int.from_bytes(head[30:34], "little")
            if compression in (0, 3):  # BI_RGB / BI_BITFIELDS: fixed row stride
                need = offset + abs(h) * ((abs(w) * bpp + 31) // 32 * 4)
        if size < need:
            raise DataError(f"truncated BMP ({size} bytes, the header needs {need})", path)


def exif_orientation(path: str | Path) -> int:
    """The EXIF orientation tag (1..8) of an image file, 1 when absent or invalid (header only)."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            o = int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 - no EXIF = no rotation
        return 1
    return o if 1 <= o <= 8 else 1


def oriented_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    """``(W, H)`` after applying an EXIF orientation (5..8 swap the axes)."""
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def apply_exif_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation ``orientation`` to ``(H, W[, C])`` pixels (as ``PIL.ImageOps.exif_transpose``).

    Source: EXIF 2.32 (CIPA DC-008) tag 274 "Orientation".
    """
    ops = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],                      # mirror left-right
        3: lambda a: a[::-1, ::-1],                   # rotate 180
        4: lambda a: a[::-1],                         # mirror top-bottom
        5: lambda a: np.swapaxes(a, 0, 1),            # transpose
        6: lambda a: np.rot90(a, -1),                 # rotate 90 clockwise
        7: lambda a: np.rot90(a, 2).swapaxes(0, 1),   # transverse
        8: lambda a: np.rot90(a, 1),                  # rotate 90 counter-clockwise
    }
    return np.ascontiguousarray(ops.get(int(orientation), ops[1])(img))


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

    The EXIF orientation is applied (module doc).

    Raises:
        DataError: missing/unreadable/truncated file, or an unsupported pixel format.
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise DataError("image file not found", path)
    check_complete(path)
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
    orientation = exif_orientation(path)
    if orientation != 1:
        img = apply_exif_orientation(img, orientation)
    return _to_unsigned(img, path)


def image_bit_depth(path: str | Path) -> int:
    """8 or 16, read from the file header where Pillow can (no full decode); else by decoding.

    A PNG's bit depth comes from its IHDR chunk (Pillow opens 16-bit colour PNGs as 8-bit
    ``RGB``/``RGBA`` while :func:`read_image` keeps them 16-bit).
    """
    try:
        with open(path, "rb") as f:
            head = f.read(26)
        if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
            return 16 if head[24] == 16 else 8
    except OSError:
        pass
    try:
        from PIL import Image

        with Image.open(path) as im:
            if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
                return 16
            if im.mode in ("L", "P", "LA", "1"):
                return 8
            if im.mode in ("RGB", "RGBA") and im.format in ("JPEG", "BMP", "GIF"):
                return 8
    except Exception:  # noqa: BLE001 - fall back to a full decode
        pass
    return 16 if read_image(path).dtype == np.uint16 else 8
