"""Names, evidence and fixes of each mistake of a composition, in the words of the code that made it."""

from __future__ import annotations

import numpy as np

from .transforms import HEATMAP_STRIDE, Frame, Structure

__all__ = ["components", "describe"]


def _frame_formula(fr: Frame) -> str:
    """The label mapping as one would write it in code."""
    if fr.kind == "stretch":
        sw, sh = fr.size
        return (
            f"x * {sw} / width, y * {sh} / height"
            if fr.conv == "corner"
            else f"(x + 0.5) * {sw} / width - 0.5, (y + 0.5) * {sh} / height - 0.5"
        )
    pad = "pad" if fr.pad == "centre" else "0"
    new = "int(width * scale)" if fr.newsize == "int" else "round(width * scale)"
    lb = f"x * scale + {pad}" if fr.conv == "corner" else f"(x + 0.5) * new_w / width - 0.5 + {pad}"
    if fr.kind == "letterbox":
        return lb
    hm = f"x_letterbox / {HEATMAP_STRIDE}" if fr.conv == "corner" else f"(x_letterbox + 0.5) / {HEATMAP_STRIDE} - 0.5"
    hm = f"int({hm})" if fr.rounding == "floor" else hm
    return f"{hm} with x_letterbox = {lb}" + (f", new_w = {new}" if fr.conv == "centre" else "")


def _pad_words(fr: Frame) -> str:
    if fr.pad != "centre":
        return "image at the top-left, padding right/bottom"
    return "image centred, pad = (S - new_w) // 2" if fr.padding == "int" else "image centred, pad = (S - new_w) / 2"


def _frame(fr: Frame) -> tuple[str, str, str, dict]:
    s = fr.size[0]
    if fr.kind == "letterbox":
        return (
            "letterbox_frame",
            f"coordinates left in the {s} x {s} letterbox input frame ({_pad_words(fr)}; "
            f"labels mapped as `{_frame_formula(fr)}`)",
            f"invert the letterbox before saving: x = (x_letterbox - {'pad' if fr.pad == 'centre' else '0'})"
            " / scale" + (" (pixel-corner convention)" if fr.conv == "corner" else ", in the pixel-centre convention"),
            {"size": [s, s], "pad": fr.pad, "convention": fr.conv, "new_size": fr.newsize, "padding": fr.padding},
        )
    if fr.kind == "heatmap":
        hm = s // HEATMAP_STRIDE
        return (
            "heatmap_frame",
            f"coordinates left in the {hm} x {hm} heatmap frame of a {s} x {s} letterbox input "
            f"(stride {HEATMAP_STRIDE}, {_pad_words(fr)}; `{_frame_formula(fr)}`"
            + (", rounded down to integer cells" if fr.rounding == "floor" else "")
            + ")",
            f"multiply heatmap coordinates by the stride {HEATMAP_STRIDE} "
            f"({'x * 4' if fr.conv == 'corner' else '(x + 0.5) * 4 - 0.5'}"
            + (", after adding half a cell to integer cells" if fr.rounding == "floor" else "")
            + "), then invert the letterbox (subtract the pads, divide by the scale) before saving",
            {
                "input_size": [s, s],
                "heatmap_size": [hm, hm],
                "stride": HEATMAP_STRIDE,
                "pad": fr.pad,
                "convention": fr.conv,
                "rounding": fr.rounding or None,
            },
        )
    sw, sh = fr.size
    return (
        "stretch_frame",
        f"coordinates left in the {sw} x {sh} stretched (resized, no padding) input frame (`{_frame_formula(fr)}`)",
        f"map predictions back with x * width / {sw}, y * height / {sh}"
        + (" (pixel-corner convention)" if fr.conv == "corner" else " in the pixel-centre convention"),
        {"size": [sw, sh], "convention": fr.conv},
    )


_UNITS = {
    "normalised": (
        "normalised",
        "coordinates normalised to [0, 1] (`x / width`, `y / height` of the {frame})",
        "multiply normalised coordinates by the {frame}'s width / height before saving",
    ),
    "normalised_half": (
        "normalised",
        "coordinates normalised to [0, 1] (`(x + 0.5) / width` of the {frame})",
        "multiply normalised coordinates by the {frame}'s width / height, minus half a pixel",
    ),
    "mm": (
        "mm_not_px",
        "x/y in millimetres, not pixels (`x * spacing` with each image's spacing)",
        "save pixel coordinates (or divide mm by each image's pixel spacing)",
    ),
    "const": (
        "mm_not_px",
        "x/y in millimetres made with one spacing of {c:g} mm/px for every image, not pixels",
        "save pixel coordinates (the pipeline multiplied them by {c:g} mm/px)",
    ),
    "scale": (
        "global_scale",
        "every coordinate multiplied by one global scale {c:g}",
        "find the resize factor {c:g} applied to the coordinates (or to the image) and undo it",
    ),
    "px_as_mm": (
        "px_as_mm",
        "pixel coordinates written in the x_mm / y_mm columns",
        "write pixel coordinates in x / y columns (or multiply them by each image's spacing)",
    ),
    "const_mm": (
        "constant_spacing",
        "millimetres made with one constant spacing ({c:g} mm/px) for every image instead of each image's own",
        "convert between mm and px with each image's own pixel spacing "
        "(DICOM PixelSpacing or the data set's device table)",
    ),
}
_MIRROR = {
    "x": (
        "the image mirrored left-right (x -> width - 1 - x)",
        "do not flip the image, or flip the predictions back: x = width - 1 - x",
    ),
    "y": (
        "the image flipped upside down (y -> height - 1 - y)",
        "do not flip the image vertically, or flip the predictions back: y = height - 1 - y",
    ),
    "xy": (
        "the image turned by 180 degrees (mirrored left-right and upside down)",
        "do not rotate the image, or turn the predictions back",
    ),
}


def _example(fr: Frame, wh) -> dict:
    """The letterbox of one image, as numbers (``scale``, ``pads``) a user can check in code."""
    w, h = (int(v) for v in wh)
    sw, sh = fr.size
    scale = min(sw / w, sh / h)
    rnd = (lambda v: int(v)) if fr.newsize == "int" else (lambda v: int(np.floor(v + 0.5)))
    nw, nh = min(sw, max(1, rnd(w * scale))), min(sh, max(1, rnd(h * scale)))
    pads = (
        [0, 0]
        if fr.pad != "centre"
        else ([(sw - nw) // 2, (sh - nh) // 2] if fr.padding == "int" else [(sw - nw) / 2, (sh - nh) / 2])
    )
    return {"image_example": [w, h], "scale_example": scale, "new_size_example": [nw, nh], "pads_example": pads}


def components(s: Structure, wh_example=None) -> list[tuple[str, str, str, dict]]:
    """``(code, title, fix, details)`` of each mistake of ``s``, in the order to undo them.

    ``wh_example``: one image's (width, height), to give a letterbox's scale and pads in numbers.
    """
    out = []
    if s.catalogue:
        out.append(
            (
                "landmark_order",
                f"landmarks in the order of another catalogue ({s.catalogue})",
                f"write landmark names, or indices in the catalogue the file declares (these are in "
                f"{s.catalogue} order)",
                {"catalogue": s.catalogue},
            )
        )
    if s.swap:
        out.append(
            (
                "swapped_axes",
                "x and y swapped (row, column instead of x, y)",
                "write x = column, y = row (numpy arrays index [row, column])",
                {},
            )
        )
    if s.unit != "px":
        code, title, fix = _UNITS[s.unit]
        frame = {"": "image", "letterbox": "letterbox input", "stretch": "stretched input", "heatmap": "heatmap"}[
            s.frame.kind
        ]
        det = (
            {"convention": "x / width" if s.unit == "normalised" else "(x + 0.5) / width"}
            if s.unit.startswith("normalised")
            else {}
        )
        if s.unit in ("const", "const_mm", "scale"):
            det = {"spacing_mm": s.c} if s.unit != "scale" else {"scale": s.c}
        out.append((code, title.format(c=s.c, frame=frame), fix.format(c=s.c, frame=frame), det))
    if s.frame.kind:
        code, title, fix, det = _frame(s.frame)
        if wh_example is not None and s.frame.kind != "stretch":
            det = {**det, **_example(s.frame, wh_example)}
        out.append((code, title, fix, det))
    if s.mirror:
        t, f = _MIRROR[s.mirror]
        out.append(("mirror", t, f, {"axis": s.mirror}))
    return out


def describe(s: Structure) -> str:
    """All mistakes of ``s`` in one phrase (``""`` for none)."""
    return "; and ".join(c[1] for c in components(s))
