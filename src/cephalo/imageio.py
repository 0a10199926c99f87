"""Image reading, the one place (bottom of the stack: depends on :mod:`cephalo.errors` only).

Used by the index (header checks), preprocessing (pixels) and ``cephalo predict`` (pixels and the
DICOM header). :func:`read_image` decodes a cephalogram into one greyscale array, keeping its bit
depth: PNG/JPEG/BMP/TIFF go through OpenCV (``IMREAD_UNCHANGED``, so 16-bit PNG/TIFF stay
uint16); DICOM (``.dcm``/``.dicom``, a ``DICM`` preamble, or a file OpenCV cannot read) through
SimpleITK. Colour images become grey (if the three channels are equal the first one is used
as is; otherwise ITU-R BT.601 luma via ``cv2.cvtColor``; an alpha channel is ignored).
No 8-bit truncation. :func:`read_input_image` adds the DICOM header (pixel spacing, bits stored).

A file that cannot be read is a :class:`~cephalo.errors.DataError` naming it and saying what was
found (:func:`describe_file`: an empty file, a text file, an unknown format, or a known format
that does not decode) -- never a decoder library's internal message.

Reliability rules (shared with the index's header read, ``cephalo.datasets.base.image_header``):

* A truncated PNG/JPEG/BMP (no ``IEND`` chunk, no JPEG end-of-image marker, fewer pixel bytes
  than the BMP header promises) is a :class:`~cephalo.errors.DataError` naming the file --
  never a silently grey-filled image (libjpeg and SimpleITK decode truncated files "fine").
* The EXIF orientation tag (274) is APPLIED, in the header size (:func:`oriented_size`) and in
  the pixels (:func:`read_image`), as image viewers and LabelMe do: width/height in the index
  always describe the pixels preprocessing reads, in the frame annotators saw.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError

__all__ = [
    "find_images",
    "RASTER_SUFFIXES",
    "DICOM_SUFFIXES",
    "IMAGE_SUFFIXES",
    "sniff_format",
    "describe_file",
    "read_image",
    "image_bit_depth",
    "check_complete",
    "exif_orientation",
    "oriented_size",
    "apply_exif_orientation",
    "InputImage",
    "dicom_spacing",
    "read_input_image",
    "text_excerpt",
    "SPACING_RANGE_MM",
    "check_spacing",
    "parse_spacing",
    "effective_bits",
    "probe_image",
]

#: plausible pixel spacing of a cephalogram, mm/px (detectors ~0.05-0.2; anything outside is a typo
#: or a unit error, e.g. 1.139 for 0.139, or 100 for 0.1 mm given in um). The one home of this range:
#: ``cephalo index`` (:func:`cephalo.index.spacing_outliers`) and ``cephalo predict`` (:func:`check_spacing`).
SPACING_RANGE_MM: tuple[float, float] = (0.02, 1.0)

#: raster formats read through OpenCV
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DICOM_SUFFIXES = (".dcm", ".dicom")
#: every suffix an image folder is searched for (case-insensitive)
IMAGE_SUFFIXES = RASTER_SUFFIXES + DICOM_SUFFIXES
_DICOM_SUFFIXES = set(DICOM_SUFFIXES)

#: leading bytes -> format name (PNG spec; JPEG SOI; BMP "BM"; TIFF II*/MM*; GIF; JPEG 2000; WebP checked below)
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
)
_SPACING_TAGS = ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing")


def sniff_format(path: str | Path) -> str | None:
    """The image format a file's leading bytes announce (``"PNG"``, ``"JPEG"``, ``"BMP"``, ``"TIFF"``,
    ``"GIF"``, ``"JPEG 2000"``, ``"WebP"``, ``"DICOM"`` for a Part-10 ``DICM`` preamble), or None.

    Raises:
        DataError: the file cannot be opened.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError as e:
        raise DataError(f"cannot read image ({e.strerror})", path) from None
    return _sniff(head)


def _sniff(head: bytes) -> str | None:
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "DICOM"
    return None


def text_excerpt(head: bytes) -> str | None:
    """The first line (<= 40 characters) of a file's leading bytes ``head`` if they read as text
    (UTF-8, >= 95 % printable, no NUL), else None. Used to say "a text file" instead of a decoder's
    message (images here, checkpoints in :mod:`cephalo.models.checkpoint`)."""
    if not head or b"\x00" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = head[:-3].decode("utf-8")  # a multi-byte character cut at the end
        except UnicodeDecodeError:
            return None
    printable = sum(c.isprintable() or c in "\r\n\t" for c in text)
    if printable < 0.95 * max(len(text), 1):
        return None
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:40] + ("..." if len(line) > 40 else "")


def describe_file(path: str | Path) -> str:
    """What a file that failed to decode holds, in words, for an error message.

    ``"an empty file (0 bytes)"``, ``"a text file, not an image (starts with '...')"``,
    ``"an unknown format (first bytes 3c 68 ...); expected PNG, JPEG, BMP, TIFF or DICOM"``, or
    ``"a PNG file (N bytes) that cannot be decoded (corrupt or unsupported)"``.
    """
    try:
        size = Path(path).stat().st_size
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as e:
        return f"a file that cannot be read ({e.strerror})"
    if size == 0:
        return "an empty file (0 bytes)"
    fmt = _sniff(head[:132])
    if fmt is not None:
        return f"a {fmt} file ({size} bytes) that cannot be decoded (corrupt or unsupported)"
    text = text_excerpt(head)
    if text is not None:
        return f"a text file, not an image (starts with {text!r})"
    return f"an unknown format (first bytes {head[:8].hex(' ')}); expected PNG, JPEG, BMP, TIFF or DICOM"


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
        2: lambda a: a[:, ::-1],  # mirror left-right
        3: lambda a: a[::-1, ::-1],  # rotate 180
        4: lambda a: a[::-1],  # mirror top-bottom
        5: lambda a: np.swapaxes(a, 0, 1),  # transpose
        6: lambda a: np.rot90(a, -1),  # rotate 90 clockwise
        7: lambda a: np.rot90(a, 2).swapaxes(0, 1),  # transverse
        8: lambda a: np.rot90(a, 1),  # rotate 90 counter-clockwise
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


def _sniff_readable(path: Path) -> str | None:
    """The format signature of ``path`` (``_sniff``; None = unknown), after refusing what no decoder
    should see: a missing, unreadable or empty file, or text where an image was expected.

    Raises:
        DataError: naming the file and what it holds (:func:`describe_file`).
    """
    if not path.is_file():
        raise DataError("image file not found", path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as e:
        raise DataError(f"cannot read image ({e.strerror})", path) from None
    fmt = _sniff(head[:132])
    if size == 0 or (fmt is None and text_excerpt(head) is not None):
        raise DataError(f"cannot read image: {describe_file(path)}", path)
    return fmt


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as ``(H, W)`` uint8 or uint16 greyscale (original pixels).

    The EXIF orientation is applied (module doc).

    Raises:
        DataError: missing, empty, text, unknown-format, truncated or undecodable file, or an
            unsupported pixel format, naming the file and what it holds (:func:`describe_file`).
    """
    import cv2

    path = Path(path)
    fmt = _sniff_readable(path)
    check_complete(path)
    img = None
    if path.suffix.lower() not in _DICOM_SUFFIXES and fmt != "DICOM":
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        try:
            import SimpleITK as sitk

            arr = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        except Exception:  # noqa: BLE001 - any reader failure is bad input, said in cephalo's words
            raise DataError(f"cannot read image: {describe_file(path)}", path) from None
        arr = np.asarray(arr)
        if arr.ndim == 3 and arr.shape[0] == 1:  # (1, H, W) single frame
            arr = arr[0]
        img = arr
    img = _to_grey(np.asarray(img), path)
    if img.size == 0:
        raise DataError("empty image (0 pixels)", path)
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


# --------------------------------------------------------------------------- inference input


@dataclass
class InputImage:
    """One decoded input image.

    Attributes:
        path: the file.
        image: ``(H, W)`` uint8 or uint16 greyscale, original pixels (a DICOM image stored with
            ``BitsStored < 16`` is rescaled to the full 16-bit range; MONOCHROME1 arrives inverted
            to MONOCHROME2 by the decoder, SimpleITK/GDCM).
        spacing: ``(x, y)`` mm/px from the file (DICOM), or None.
        spacing_source: the DICOM attribute the spacing came from, or None.
        bit_depth: bits the grey values use (8, 16, DICOM ``BitsStored``, or 10/12/14 detected in a
            16-bit TIFF/PNG by :func:`effective_bits`; the image is then rescaled to 0..65535).
        container_bits: bits per sample of the file itself (TIFF ``BitsPerSample``, PNG depth, 8/16).
        bit_depth_note: what was done about the bit depth, in words (None: nothing).
    """

    path: Path
    image: np.ndarray
    spacing: tuple[float, float] | None = None
    spacing_source: str | None = None
    bit_depth: int = 8
    container_bits: int = 8
    bit_depth_note: str | None = None

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    if path.suffix.lower() in RASTER_SUFFIXES:
        return False
    try:  # DICOM Part 10: 128-byte preamble + "DICM"
        return sniff_format(path) == "DICOM"
    except DataError:
        return False


def dicom_spacing(ds: Any, path: str | Path | None = None) -> tuple[tuple[float, float] | None, str | None]:
    """Pixel spacing of a pydicom dataset as ``((x, y) mm/px, attribute name)``, or ``(None, None)``.

    DICOM (PS3.3 C.7.6.2 / C.8.11.7) stores ``[row spacing, column spacing]``, i.e. ``[y, x]``; the
    result is ``(x, y)``. Attributes tried in order: ``PixelSpacing`` (calibrated to the patient
    plane where the modality provides it), ``ImagerPixelSpacing`` (detector plane),
    ``NominalScannedPixelSpacing``.

    Raises:
        DataError: an attribute that is present but not two positive finite numbers.
    """
    for tag in _SPACING_TAGS:
        value = getattr(ds, tag, None)
        if value is None or value == "" or (hasattr(value, "__len__") and len(value) == 0):
            continue
        try:
            vals = [float(v) for v in value]
        except (TypeError, ValueError):
            raise DataError(f"DICOM {tag} is not numeric: {value!r}", path) from None
        if len(vals) != 2 or not all(math.isfinite(v) and v > 0 for v in vals):
            raise DataError(f"DICOM {tag} must be two positive numbers [row (y), column (x)], got {vals}", path)
        row_y, col_x = vals
        return (col_x, row_y), tag
    return None, None


def check_spacing(
    spacing: Any, what: str = "pixel spacing", path: str | Path | None = None, error: type = DataError
) -> tuple[float, float]:
    """Validate a pixel spacing: ``(x, y)`` mm/px, each finite and inside :data:`SPACING_RANGE_MM`.

    Args:
        spacing: a number (isotropic) or two numbers ``(x, y)`` in mm/px.
        what: how the message names the value (``"--spacing"``, ``"DICOM PixelSpacing"``).
        path: the file it came from, if any (named in the message).
        error: the :class:`~cephalo.errors.CephaloError` subclass raised.

    Returns:
        ``(x, y)`` float mm/px.

    Raises:
        ``error``: not one or two numbers, or a value outside the plausible range (one line, with
        the micrometre hint for values 20-1000).
    """
    raw: list[Any] = [spacing] if np.isscalar(spacing) else list(spacing)
    try:
        vals: list[float] = [float(v) for v in raw]
    except (TypeError, ValueError):
        raise error(f"{what} must be a number or X,Y in mm/px, got {spacing!r}", path) from None
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2:
        raise error(f"{what} must be one number or two (X,Y) in mm/px, got {len(vals)}: {spacing!r}", path)
    lo, hi = SPACING_RANGE_MM
    for v in vals:
        if not (math.isfinite(v) and lo <= v <= hi):
            hint = " (micrometres? 100 um = 0.1 mm)" if math.isfinite(v) and 20 <= v <= 1000 else ""
            raise error(
                f"{what} {v:g} mm/px is outside the plausible range {lo:g}-{hi:g} mm/px of a cephalogram{hint}", path
            )
    return vals[0], vals[1]


def parse_spacing(
    text: str | float | None, what: str = "--spacing", error: type = DataError
) -> tuple[float, float] | None:
    """``"0.1"`` or ``"0.1,0.12"`` (x, y mm/px; also a number or a pair) -> checked ``(x, y)`` or None.

    Raises:
        ``error``: unparsable, not 1-2 values, or out of :data:`SPACING_RANGE_MM` (:func:`check_spacing`).
    """
    if text is None:
        return None
    if isinstance(text, str):
        parts = [t.strip() for t in text.replace(";", ",").split(",")]
        try:
            vals: Any = [float(t) for t in parts]
        except ValueError:
            raise error(f"{what} must be a number or X,Y in mm/px, got {text!r}") from None
    else:
        vals = text
    return check_spacing(vals, what, error=error)


def effective_bits(image: np.ndarray, container_bits: int) -> int:
    """Bits the grey values actually use: the smallest of 10, 12, 14 whose range holds the image's
    maximum when a 16-bit container holds less (a 12-bit detector saved as 16-bit TIFF/PNG keeps
    0..4095), else ``container_bits``.

    Args:
        image: (H, W) uint8/uint16; container_bits: 8 or 16 (the file's BitsPerSample / dtype).
    """
    if container_bits != 16 or image.dtype != np.uint16:
        return int(container_bits)
    top = int(image.max()) if image.size else 0
    for b in (10, 12, 14):
        if top <= (1 << b) - 1 and top > (1 << (b - 2)) - 1:  # uses the upper half of the b-bit range
            return b
    return 16


def probe_image(path: str | Path) -> None:
    """Cheap check that a file is a decodable image, before any model is loaded (fail fast).

    Reads the header (and, for PNG/JPEG/BMP, the end of the file, :func:`check_complete`); DICOM
    through ``pydicom`` (header only); other formats through Pillow's header parser, falling back
    to a full :func:`read_image` where Pillow cannot open them.

    Raises:
        DataError: as :func:`read_image` (missing, empty, text, unknown or truncated file).
    """
    path = Path(path)
    fmt = _sniff_readable(path)
    if fmt is None and path.suffix.lower() not in DICOM_SUFFIXES:
        read_image(path)  # no known signature (e.g. DICOM without preamble): the real decoder decides
        return
    check_complete(path)
    if fmt == "DICOM" or path.suffix.lower() in DICOM_SUFFIXES:
        import pydicom

        try:
            pydicom.dcmread(str(path), stop_before_pixels=True)
        except Exception:  # noqa: BLE001
            raise DataError(f"cannot read DICOM: {describe_file(path)}", path) from None
        return
    try:
        from PIL import Image

        with Image.open(path) as im:
            im.size  # noqa: B018 - header parsed
            if im.format in ("PNG", "JPEG", "BMP"):
                im.verify()  # structure check without a full decode
    except Exception:  # noqa: BLE001 - let the real decoder decide (e.g. 16-bit TIFF variants)
        read_image(path)


def read_input_image(path: str | Path) -> InputImage:
    """Decode one image file for inference (see :class:`InputImage`).

    PNG/JPEG/BMP/TIFF: :func:`read_image` (OpenCV, ``IMREAD_UNCHANGED``: 16-bit PNG/TIFF stay
    uint16; colour -> grey). DICOM (``.dcm``/``.dicom`` or a ``DICM`` preamble): pixels through the
    same decoder (SimpleITK/GDCM), header through ``pydicom`` (spacing via :func:`dicom_spacing`;
    ``BitsStored`` < 16 rescaled to 0..65535 so that the white level is the stored one, not 65535).
    ``MONOCHROME1`` images come out of SimpleITK/GDCM already inverted to MONOCHROME2 (bone
    bright); the tests check this.

    Raises:
        DataError: missing/empty/text/unknown/undecodable file, unsupported pixel format, bad
            DICOM header (naming the file and what it holds).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("image file not found", path)
    if not _is_dicom(path):
        img = read_image(path)
        container = 16 if img.dtype == np.uint16 else 8
        if container == 16 and sniff_format(path) == "TIFF":
            container = _tiff_bits(path) or 16
        bits = effective_bits(img, container)
        note = None
        if bits < 16 and img.dtype == np.uint16:
            top = (1 << bits) - 1
            note = (
                f"{bits}-bit values (max {int(img.max())}) in a {container}-bit file: rescaled by "
                f"65535/{top} = {65535 / top:.2f} so that white is white"
            )
            img = np.round(img.astype(np.float64) * (65535.0 / top)).astype(np.uint16)
        return InputImage(path, img, None, None, bits, container, note)

    import pydicom

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - any header failure is bad input, said in cephalo's words
        what = describe_file(path)
        if what.startswith("a DICOM file"):
            what = "a DICOM file whose header cannot be parsed"
        raise DataError(f"cannot read DICOM: {what}", path) from None
    spacing, source = dicom_spacing(ds, path)
    img = read_image(path)
    bits = 16 if img.dtype == np.uint16 else 8
    stored = getattr(ds, "BitsStored", None)
    if img.dtype == np.uint16 and stored is not None and 8 <= int(stored) < 16:
        top = (1 << int(stored)) - 1
        if int(img.max()) <= top:  # values fit the stored depth: stretch to the 16-bit range
            bits = int(stored)
            img = np.round(img.astype(np.float64) * (65535.0 / top)).astype(np.uint16)
    note = (
        f"DICOM BitsStored {bits}: rescaled by 65535/{(1 << bits) - 1} so that white is white"
        if bits < 16 and img.dtype == np.uint16
        else None
    )
    if spacing is not None:
        spacing = check_spacing(spacing, f"DICOM {source}", path)
    return InputImage(path, img, spacing, source, bits, 16 if img.dtype == np.uint16 else 8, note)


def _tiff_bits(path: Path) -> int | None:
    """BitsPerSample of a TIFF's first page (tifffile), or None where it cannot be read."""
    try:
        import tifffile

        with tifffile.TiffFile(str(path)) as tf:
            return int(tf.pages[0].bitspersample)
    except Exception:  # noqa: BLE001 - header only, the pixels were decoded already
        return None


def find_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Expand INPUT arguments into image files.

    A file is taken as is (any suffix: a DICOM file may have none); a folder contributes its files
    whose suffix is in :data:`IMAGE_SUFFIXES` (case-insensitive, not recursive, sorted by name).
    Duplicates (same resolved path) are dropped, first occurrence kept.

    Raises:
        DataError: an INPUT that does not exist, or a folder without images.
    """
    out: list[Path] = []
    seen: set[Path] = set()
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in this folder", p)
        elif p.is_file():
            files = [p]
        else:
            raise DataError("input not found", p)
        for f in files:
            r = f.resolve()
            if r not in seen:
                seen.add(r)
                out.append(f)
    return out
