"""Cephalometric measurements, each defined once: data (landmarks, unit, normal range, classes) + one formula.

A :class:`Measurement` names the landmarks it needs by *canonical name* (``cephalo.landmarks``), so
the same definition works for every catalogue holding them (ISBI-19, Aariz-29, CL-Detection-38, a
clinic's own). :func:`compute` evaluates any set of measurements on ``(N, K, 2)`` landmark arrays in
original-image pixels: the coordinates are first scaled to millimetres **per axis with each image's
own pixel spacing** (:func:`cephalo.evaluate.metrics.offsets_mm`, the one place spacing is applied),
so angles and distances are those of the patient, never of anisotropic pixels.

Frame. Formulas work in a *patient frame*: mm, x pointing **anterior** (towards the face), y
pointing **up**. From image pixels (x right, y down) this is ``(±x * sx, -y * sy)``, with the sign
chosen per image so that nasion lies anterior to sella (``x_N > x_S`` after the flip). Signed
angles and signed distances therefore do not depend on whether the patient faces left or right.

Sources of the definitions
--------------------------
* ISBI 2015 challenge, classification task: Wang C.-W. et al., "A benchmark for comparison of dental
  radiography analysis algorithms", Medical Image Analysis 31:63-76 (2016), Table 2 (eight
  measurements, landmarks L1..L19 of the ISBI order, class ranges); the same eight are used by
  Lindner C. et al., "Fully automatic system for accurate localisation and analysis of cephalometric
  landmarks in lateral cephalograms", Scientific Reports 6:33581 (2016). The signs of the composite
  angles (ODI, APDI) follow Kim Y.H., "Overbite depth indicator with particular reference to
  anterior open-bite", AJO 65:586-611 (1974) and Kim Y.H. & Vietas J.J., "Anteroposterior
  dysplasia indicator: an adjunct to cephalometric differential diagnosis", AJO 73:619-633 (1978),
  as implemented for the challenge data (palatal plane angle positive when the palatal plane's
  anterior end (ANS) lies below its FH-parallel, i.e. rotated clockwise in a right-facing view;
  AB-plane angle negative when B lies behind the facial plane direction). The challenge's
  "FMA" is the angle between S-N and Go-Gn (Steiner's SN-GoGn), *not* Tweed's FH-MP angle,
  which is here ``FH_MP``.
* Downs W.B., "Variations in facial relationships: their significance in treatment and
  prognosis", AJO 34:812-840 (1948): facial angle, angle of convexity, Y-axis, mandibular plane
  angle, interincisal angle (means and ranges of the 20 "excellent occlusion" subjects).
* Steiner C.C., "Cephalometrics for you and me", AJO 39:729-755 (1953): SNA 82, SNB 80, ANB 2.
* Tweed C.H., "The Frankfort-mandibular incisor angle (FMIA) in orthodontic diagnosis", Angle
  Orthod. 24:121-169 (1954): IMPA 90 +/- 5.
* Jarabak J.R. & Fizzell J.A., Technique and Treatment with Light-Wire Edgewise Appliances (1972):
  gonial angle Ar-Go-Me 130 +/- 7.
* Ricketts R.M., "Esthetics, environment, and the law of lip relation", AJO 54:272-289 (1968):
  upper lip -4 +/- 2 mm and lower lip -2 +/- 2 mm to the E-line (Pn-Pog'), adult.

Norms and classes, each with its reference. ``normal`` is the range the ``status``
(``below``/``normal``/``above``) is read against, and ``norm_reference`` names it: Steiner 1953
for SNA/SNB/ANB (means 82/80/2 deg, +/- 2 deg), Downs 1948 for the Downs angles, the ISBI 2015
class-1 band for ODI, APDI, FHI, FMA and MW (no textbook norm of the same construction). The
``classes`` are always the ISBI 2015 classes (Table 2 of Wang et al. 2016), applied exactly as the
challenge's classification tool does: class 1 is the closed class-1 band; MW class 2 is
``MW == 0`` exactly (edge to edge) and every other ``MW < 2 mm`` (including ``0 < MW < 2``) is class
3; the "FMA" is the 0..180 deg angle between the directions S->N and Go->Gn, not folded to the
acute angle. So an ANB of 2 deg is ``normal`` after Steiner and ISBI class 3 (class III) at once;
outputs print both with their references.

Measurement intervals from landmark radii (:func:`measurement_intervals`): if every landmark lies
within its prediction radius ``r_k`` (mm), a measurement ``f`` moves at most, to first order,
``sum_k r_k * ||grad_k f||`` (the gradient with respect to landmark ``k``'s mm position, by
central differences). With per-landmark coverage ``1 - alpha`` the joint event has probability at
least ``1 - m * alpha`` for the ``m`` landmarks involved (Bonferroni), so the interval is
conservative; it is a worst case over the disks, not a distribution.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "ClassBand",
    "Measurement",
    "MEASUREMENTS",
    "ISBI2015_KEYS",
    "PLAUSIBLE",
    "get_measurement",
    "available",
    "compute",
    "classify",
    "measurement_intervals",
    "patient_frame_mm",
]

_P = Mapping[str, np.ndarray]  # canonical name -> (N, 2) mm, patient frame


# --------------------------------------------------------------------------- vector helpers (patient frame)


def _dir(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Direction angle (rad) of the vector a -> b, (N,)."""
    d = b - a
    return np.arctan2(d[:, 1], d[:, 0])


def _wrap_deg(a: np.ndarray) -> np.ndarray:
    """Wrap degrees into (-180, 180]."""
    return -((-a + 180.0) % 360.0 - 180.0)


def _vec_angle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Unsigned angle (deg, 0..180) between vectors u and v, (N, 2) each."""
    cross = u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]
    dot = (u * v).sum(axis=1)
    return np.degrees(np.abs(np.arctan2(cross, dot)))


def _vertex_angle(a: np.ndarray, vertex: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Angle a-vertex-c (deg, 0..180)."""
    return _vec_angle(a - vertex, c - vertex)


def _line_angle(a1, a2, b1, b2) -> np.ndarray:
    """Acute angle (deg, 0..90) between line a1-a2 and line b1-b2."""
    t = _vec_angle(a2 - a1, b2 - b1)
    return np.minimum(t, 180.0 - t)


def _signed_rot(a1, a2, b1, b2) -> np.ndarray:
    """Signed angle (deg, (-180, 180]) from direction a1->a2 to direction b1->b2; positive = counter-clockwise
    in the patient frame (x anterior, y up)."""
    return _wrap_deg(np.degrees(_dir(b1, b2) - _dir(a1, a2)))


def _dist(a, b) -> np.ndarray:
    return np.hypot(*(b - a).T)


def _signed_dist_to_line(p, l1, l2) -> np.ndarray:
    """Perpendicular distance (mm) of p from the line l1-l2, positive on the anterior (+x) side of a line
    drawn downwards (l1 above l2)."""
    u = l2 - l1
    n = np.hypot(u[:, 0], u[:, 1])
    w = p - l1
    cross = u[:, 0] * w[:, 1] - u[:, 1] * w[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        d = cross / n
    # a downward line (u_y < 0) has its anterior side where cross > 0; flip for an upward-drawn line
    return np.where(u[:, 1] <= 0, d, -d)


# --------------------------------------------------------------------------- formulas


def _sna(p: _P) -> np.ndarray:
    return _vertex_angle(p["sella"], p["nasion"], p["a_point"])


def _snb(p: _P) -> np.ndarray:
    return _vertex_angle(p["sella"], p["nasion"], p["b_point"])


def _anb(p: _P) -> np.ndarray:
    # Signed: SNA - SNB (negative when B lies anterior to A, skeletal class III); equals the angle
    # A-N-B whenever A lies anterior to B.
    return _sna(p) - _snb(p)


def _pp_fh(p: _P) -> np.ndarray:
    """Palatal plane (PNS->ANS) to FH (Po->Or), positive when ANS is tipped down (clockwise)."""
    return _signed_rot(p["posterior_nasal_spine"], p["anterior_nasal_spine"], p["porion"], p["orbitale"])


def _odi(p: _P) -> np.ndarray:
    # Kim 1974 / ISBI 2015: angle AB plane (L5L6) to mandibular plane (L10L8) + palatal plane (L17L18) to FH (L4L3).
    ab_mp = _vec_angle(p["gonion"] - p["menton"], p["a_point"] - p["b_point"])
    return ab_mp + _pp_fh(p)


def _apdi(p: _P) -> np.ndarray:
    # Kim & Vietas 1978 / ISBI 2015: FH (L3L4) to facial plane (L2L7) + facial plane to AB plane (L5L6)
    # + FH to palatal plane (L17L18).
    facial = _vec_angle(p["porion"] - p["orbitale"], p["pogonion"] - p["nasion"])
    ab = _signed_rot(p["nasion"], p["pogonion"], p["a_point"], p["b_point"])
    return facial + ab + _pp_fh(p)


def _fhi(p: _P) -> np.ndarray:
    # posterior face height S-Go (L1L10) / anterior face height N-Me (L2L8)
    return _dist(p["sella"], p["gonion"]) / _dist(p["nasion"], p["menton"])


def _isbi_fma(p: _P) -> np.ndarray:
    # the challenge's "FMA": angle between the directions S->N (L1L2) and Go->Gn (L10L9), 0..180 deg as the
    # challenge's classification tool takes it (not folded to the acute angle: a value above 90 deg stays)
    return _vec_angle(p["nasion"] - p["sella"], p["gnathion"] - p["gonion"])


def _mw(p: _P) -> np.ndarray:
    # ISBI 2015: |L12 L11| with the sign of x(L12) - x(L11): positive when the upper incisal incision
    # lies anterior to the lower one (x anterior in the patient frame).
    u, lo = p["upper_incisor_tip"], p["lower_incisor_tip"]
    return np.sign(u[:, 0] - lo[:, 0]) * _dist(u, lo)


def _fh_mp(p: _P) -> np.ndarray:
    return _line_angle(p["porion"], p["orbitale"], p["gonion"], p["menton"])


def _facial_angle(p: _P) -> np.ndarray:
    return _vec_angle(p["porion"] - p["orbitale"], p["pogonion"] - p["nasion"])


def _convexity(p: _P) -> np.ndarray:
    # 180 - angle N-A-Pog, positive when A lies anterior to the line N-Pog (convex profile)
    ang = 180.0 - _vertex_angle(p["nasion"], p["a_point"], p["pogonion"])
    side = _signed_dist_to_line(p["a_point"], p["nasion"], p["pogonion"])
    return np.where(side < 0, -ang, ang)


def _y_axis(p: _P) -> np.ndarray:
    return _vec_angle(p["orbitale"] - p["porion"], p["gnathion"] - p["sella"])


def _gonial(p: _P) -> np.ndarray:
    return _vertex_angle(p["articulare"], p["gonion"], p["menton"])


def _interincisal(p: _P) -> np.ndarray:
    return _vec_angle(
        p["upper_incisor_apex"] - p["upper_incisor_tip"], p["lower_incisor_apex"] - p["lower_incisor_tip"]
    )


def _impa(p: _P) -> np.ndarray:
    return _vec_angle(p["lower_incisor_tip"] - p["lower_incisor_apex"], p["gonion"] - p["menton"])


def _ul_e(p: _P) -> np.ndarray:
    return _signed_dist_to_line(p["labrale_superius"], p["pronasale"], p["soft_tissue_pogonion"])


def _ll_e(p: _P) -> np.ndarray:
    return _signed_dist_to_line(p["labrale_inferius"], p["pronasale"], p["soft_tissue_pogonion"])


# --------------------------------------------------------------------------- definitions


@dataclass(frozen=True)
class ClassBand:
    """One class of a measurement: ``label`` (the standard's number), ``name``, value range.

    The range is ``lo <(=) value <(=) hi``; ``closed`` says which ends are included (``"both"``,
    ``"lo"``, ``"hi"``, ``"none"``); infinite ends are written as ``-inf``/``inf``.
    """

    label: int
    name: str
    lo: float = -math.inf
    hi: float = math.inf
    closed: str = "both"

    def contains(self, v: np.ndarray) -> np.ndarray:
        lo_ok = (v >= self.lo) if self.closed in ("both", "lo") else (v > self.lo)
        hi_ok = (v <= self.hi) if self.closed in ("both", "hi") else (v < self.hi)
        return lo_ok & hi_ok


@dataclass(frozen=True)
class Measurement:
    """A cephalometric measurement: data + one formula.

    Attributes:
        key: short identifier (``"SNA"``), column name in every output.
        title: human title.
        unit: ``"deg"`` | ``"mm"`` | ``"ratio"``.
        landmarks: canonical landmark names the formula reads.
        definition: the construction in words (with ISBI numbers where it is an ISBI measurement).
        formula: ``{name: (N, 2) mm patient-frame coords} -> (N,) float64``.
        normal: ``(lo, hi)`` normal range in ``unit``.
        normal_source: where the normal range comes from.
        classes: class bands (ISBI 2015) or ``()``; ``class_source`` their source.
        norm_ref: short name of the normal range's reference (``norm_reference``).
        analysis: ``isbi2015`` | ``steiner`` | ``downs`` | ``tweed`` | ``jarabak`` | ``ricketts``.
    """

    key: str
    title: str
    unit: str
    landmarks: tuple[str, ...]
    definition: str
    formula: Callable[[_P], np.ndarray] = field(repr=False)
    normal: tuple[float, float]
    normal_source: str
    analysis: str
    classes: tuple[ClassBand, ...] = ()
    class_source: str = ""
    norm_ref: str = ""

    @property
    def norm_reference(self) -> str:
        """Short name of the reference the normal range comes from (``"Steiner 1953"``, ``"ISBI 2015 class 1"``)."""
        return self.norm_ref or self.normal_source

    def status(self, value: float) -> str | None:
        """``below`` | ``normal`` | ``above`` against :attr:`normal` (closed range), None for NaN."""
        v = float(value)
        if not math.isfinite(v):
            return None
        return "below" if v < self.normal[0] else ("above" if v > self.normal[1] else "normal")

    def to_dict(self) -> dict:
        """JSON-ready description (no formula)."""
        return {
            "key": self.key,
            "title": self.title,
            "unit": self.unit,
            "landmarks": list(self.landmarks),
            "definition": self.definition,
            "normal": list(self.normal),
            "normal_source": self.normal_source,
            "norm_reference": self.norm_reference,
            "analysis": self.analysis,
            "class_source": self.class_source,
            "classes": [
                {
                    "label": c.label,
                    "name": c.name,
                    "lo": None if math.isinf(c.lo) else c.lo,
                    "hi": None if math.isinf(c.hi) else c.hi,
                    "closed": c.closed,
                }
                for c in self.classes
            ],
        }


_WANG = "Wang et al., Medical Image Analysis 31 (2016), Table 2 (ISBI 2015 challenge)"
_STEINER = "Steiner, AJO 39:729-755 (1953)"
_ISBI1 = "ISBI 2015 class 1"
_INF = math.inf


def _isbi3(lo: float, hi: float, below: tuple[int, str], above: tuple[int, str], normal: str) -> tuple[ClassBand, ...]:
    return (
        ClassBand(1, normal, lo, hi, "both"),
        ClassBand(below[0], below[1], -_INF, lo, "none"),
        ClassBand(above[0], above[1], hi, _INF, "none"),
    )


MEASUREMENTS: dict[str, Measurement] = {
    m.key: m
    for m in [
        Measurement(
            "ANB",
            "ANB angle",
            "deg",
            ("sella", "nasion", "a_point", "b_point"),
            "SNA - SNB, i.e. the angle A-N-B (L5 L2 L6), negative when B lies anterior to A",
            _anb,
            (0.0, 4.0),
            _STEINER + " (ANB 2; +/- 2 deg)",
            "steiner",
            _isbi3(3.2, 5.7, (3, "class III"), (2, "class II"), "class I (normal)"),
            _WANG,
            "Steiner 1953",
        ),
        Measurement(
            "SNB",
            "SNB angle",
            "deg",
            ("sella", "nasion", "b_point"),
            "angle S-N-B (L1 L2 L6)",
            _snb,
            (78.0, 82.0),
            _STEINER + " (SNB 80; +/- 2 deg)",
            "steiner",
            _isbi3(74.6, 78.7, (2, "retrognathic mandible"), (3, "prognathic mandible"), "normal mandible"),
            _WANG,
            "Steiner 1953",
        ),
        Measurement(
            "SNA",
            "SNA angle",
            "deg",
            ("sella", "nasion", "a_point"),
            "angle S-N-A (L1 L2 L5)",
            _sna,
            (80.0, 84.0),
            _STEINER + " (SNA 82; +/- 2 deg)",
            "steiner",
            _isbi3(79.4, 83.2, (3, "retrognathic maxilla"), (2, "prognathic maxilla"), "normal maxilla"),
            _WANG,
            "Steiner 1953",
        ),
        Measurement(
            "ODI",
            "Overbite depth indicator",
            "deg",
            (
                "a_point",
                "b_point",
                "gonion",
                "menton",
                "posterior_nasal_spine",
                "anterior_nasal_spine",
                "porion",
                "orbitale",
            ),
            "angle of the AB plane (L5L6) to the mandibular plane (L10L8) + angle of the palatal plane "
            "(L17L18) to FH (L4L3), the latter positive when ANS is tipped down (Kim 1974)",
            _odi,
            (68.4, 80.5),
            _WANG + "; Kim 1974 (74.5 +/- 6.07)",
            "isbi2015",
            _isbi3(68.4, 80.5, (3, "open bite tendency"), (2, "deep bite tendency"), "normal"),
            _WANG,
            _ISBI1,
        ),
        Measurement(
            "APDI",
            "Anteroposterior dysplasia indicator",
            "deg",
            (
                "porion",
                "orbitale",
                "nasion",
                "pogonion",
                "a_point",
                "b_point",
                "posterior_nasal_spine",
                "anterior_nasal_spine",
            ),
            "angle FH (L3L4) to facial plane (L2L7) + facial plane to AB plane (L5L6) + FH to palatal plane "
            "(L17L18), signed after Kim & Vietas 1978",
            _apdi,
            (77.6, 85.2),
            _WANG + "; Kim & Vietas 1978 (81.4 +/- 3.8)",
            "isbi2015",
            _isbi3(77.6, 85.2, (2, "class II tendency"), (3, "class III tendency"), "normal"),
            _WANG,
            _ISBI1,
        ),
        Measurement(
            "FHI",
            "Facial height index",
            "ratio",
            ("sella", "gonion", "nasion", "menton"),
            "posterior face height S-Go (L1L10) / anterior face height N-Me (L2L8)",
            _fhi,
            (0.65, 0.75),
            _WANG,
            "isbi2015",
            _isbi3(0.65, 0.75, (3, "long face tendency"), (2, "short face tendency"), "normal"),
            _WANG,
            _ISBI1,
        ),
        Measurement(
            "FMA",
            "SN to mandibular plane (Go-Gn), the ISBI 2015 'FMA'",
            "deg",
            ("sella", "nasion", "gonion", "gnathion"),
            "angle between the directions S->N (L1L2) and Go->Gn (L10L9), 0..180 deg, as the ISBI 2015 "
            "challenge's tool computes its 'FMA' (not folded to the acute angle) "
            "(Steiner's SN-GoGn; Tweed's FH-MP angle is FH_MP)",
            _isbi_fma,
            (26.8, 31.4),
            _WANG,
            "isbi2015",
            _isbi3(26.8, 31.4, (3, "low angle tendency"), (2, "high angle tendency"), "normal"),
            _WANG,
            _ISBI1,
        ),
        Measurement(
            "MW",
            "Modified Wits (signed incisor distance)",
            "mm",
            ("upper_incisor_tip", "lower_incisor_tip"),
            "distance L12-L11 (upper to lower incisal incision), positive when the upper incisor tip lies "
            "anterior to the lower one",
            _mw,
            (2.0, 4.5),
            _WANG,
            "isbi2015",
            (
                ClassBand(1, "normal", 2.0, 4.5, "both"),
                ClassBand(2, "edge to edge", 0.0, 0.0, "both"),
                ClassBand(3, "anterior cross bite", -_INF, 2.0, "none"),
                ClassBand(4, "large overjet", 4.5, _INF, "none"),
            ),
            _WANG + " as the challenge's classification tool assigns them (0 < MW < 2 mm is class 3)",
            _ISBI1,
        ),
        Measurement(
            "FH_MP",
            "Mandibular plane angle (FH to Go-Me)",
            "deg",
            ("porion", "orbitale", "gonion", "menton"),
            "acute angle between Frankfort horizontal (Po-Or) and the mandibular plane (Go-Me)",
            _fh_mp,
            (17.0, 28.0),
            "Downs 1948 (mean 21.9, range 17-28)",
            "downs",
        ),
        Measurement(
            "FACIAL_ANGLE",
            "Facial angle (FH to N-Pog)",
            "deg",
            ("porion", "orbitale", "nasion", "pogonion"),
            "inferior-posterior angle between FH (Po-Or) and the facial plane (N-Pog)",
            _facial_angle,
            (82.0, 95.0),
            "Downs 1948 (mean 87.8, range 82-95)",
            "downs",
        ),
        Measurement(
            "CONVEXITY",
            "Angle of convexity (N-A-Pog)",
            "deg",
            ("nasion", "a_point", "pogonion"),
            "180 - angle N-A-Pog, positive when A lies anterior to N-Pog",
            _convexity,
            (-8.5, 10.0),
            "Downs 1948 (mean 0, range -8.5 to 10)",
            "downs",
        ),
        Measurement(
            "Y_AXIS",
            "Y-axis (FH to S-Gn)",
            "deg",
            ("porion", "orbitale", "sella", "gnathion"),
            "anterior-inferior angle between FH (Po-Or) and S-Gn",
            _y_axis,
            (53.0, 66.0),
            "Downs 1948 (mean 59.4, range 53-66)",
            "downs",
        ),
        Measurement(
            "GONIAL",
            "Gonial angle (Ar-Go-Me)",
            "deg",
            ("articulare", "gonion", "menton"),
            "angle Ar-Go-Me",
            _gonial,
            (123.0, 137.0),
            "Jarabak & Fizzell 1972 (130 +/- 7)",
            "jarabak",
        ),
        Measurement(
            "INTERINCISAL",
            "Interincisal angle",
            "deg",
            ("upper_incisor_tip", "upper_incisor_apex", "lower_incisor_tip", "lower_incisor_apex"),
            "angle between the upper (UIT-UIA) and lower (LIT-LIA) incisor long axes",
            _interincisal,
            (130.0, 150.5),
            "Downs 1948 (mean 135.4, range 130-150.5)",
            "downs",
        ),
        Measurement(
            "IMPA",
            "Incisor mandibular plane angle",
            "deg",
            ("lower_incisor_tip", "lower_incisor_apex", "gonion", "menton"),
            "angle between the lower incisor axis (LIA-LIT) and the mandibular plane (Me-Go)",
            _impa,
            (85.0, 95.0),
            "Tweed 1954 (90 +/- 5)",
            "tweed",
        ),
        Measurement(
            "UL_E",
            "Upper lip to E-line",
            "mm",
            ("labrale_superius", "pronasale", "soft_tissue_pogonion"),
            "signed distance of Ls from the E-line Pn-Pog', negative behind it",
            _ul_e,
            (-6.0, -2.0),
            "Ricketts 1968 (adult -4 +/- 2 mm)",
            "ricketts",
        ),
        Measurement(
            "LL_E",
            "Lower lip to E-line",
            "mm",
            ("labrale_inferius", "pronasale", "soft_tissue_pogonion"),
            "signed distance of Li from the E-line Pn-Pog', negative behind it",
            _ll_e,
            (-4.0, 0.0),
            "Ricketts 1968 (adult -2 +/- 2 mm)",
            "ricketts",
        ),
    ]
}

#: Plausibility bounds per measurement (its unit): a value outside cannot come from a human head's landmarks
#: placed anywhere near right, so it is a prediction failure (``cephalo.assess`` withholds it). Chosen
#: about twice as wide around the norm as the extremes of the 300 ISBI 2015 mean annotations (images
#: 001-300: ANB -9.7..10.9, SNB 67.9..96.5, SNA 69.1..94.0, ODI 38.2..99.8, APDI 66.7..115.8, FHI
#: 0.50..0.84, FMA 11.6..51.6, MW -13.3..10.8, FH_MP 7.1..47.6, facial angle 75.6..105.7, convexity
#: -22.9..27.8, Y-axis 46.6..77.1, gonial 107.1..144.9; ``tests/test_clinic_outputs.py`` checks all 300
#: pass). A failure detector, not a norm.
PLAUSIBLE: dict[str, tuple[float, float]] = {
    "ANB": (-25.0, 25.0),
    "SNB": (50.0, 115.0),
    "SNA": (50.0, 115.0),
    "ODI": (15.0, 130.0),
    "APDI": (40.0, 145.0),
    "FHI": (0.3, 1.1),
    "FMA": (0.0, 75.0),
    "MW": (-25.0, 25.0),
    "FH_MP": (-10.0, 70.0),
    "FACIAL_ANGLE": (55.0, 125.0),
    "CONVEXITY": (-50.0, 55.0),
    "Y_AXIS": (25.0, 100.0),
    "GONIAL": (85.0, 175.0),
    "INTERINCISAL": (70.0, 180.0),
    "IMPA": (50.0, 140.0),
    "UL_E": (-25.0, 20.0),
    "LL_E": (-25.0, 20.0),
}

#: the eight measurements of the ISBI 2015 classification task, in the challenge's order
ISBI2015_KEYS: tuple[str, ...] = ("ANB", "SNB", "SNA", "ODI", "APDI", "FHI", "FMA", "MW")


def get_measurement(key: str) -> Measurement:
    """Raises ValueError listing the valid keys."""
    try:
        return MEASUREMENTS[key]
    except KeyError:
        raise ValueError(f"unknown measurement {key!r}; valid: {sorted(MEASUREMENTS)}") from None


def available(names: Iterable[str], keys: Iterable[str] | None = None) -> list[str]:
    """Keys of the measurements (all, or ``keys``) whose landmarks are all among ``names``, in table order."""
    have = set(names)
    wanted = list(MEASUREMENTS) if keys is None else [get_measurement(k).key for k in keys]
    return [k for k in wanted if set(MEASUREMENTS[k].landmarks) <= have]


def patient_frame_mm(coords: np.ndarray, names: Sequence[str], spacing: np.ndarray) -> np.ndarray:
    """Original-pixel landmarks -> patient-frame millimetres (x anterior, y up).

    Args:
        coords: (N, K, 2) float, xy original-image pixels (origin at the centre of the top-left
            pixel), NaN = missing.
        names: K canonical names; ``sella`` and ``nasion`` decide the facing direction when present
            (otherwise the patient is taken to face right, +x in the image).
        spacing: (N, 2) mm/px (x, y) per image, or (2,).

    Returns:
        (N, K, 2) float64 mm: ``x = s * x_px * sx``, ``y = -y_px * sy``, with ``s = -1`` for an image
        whose nasion lies left of its sella.

    Raises:
        ValueError: bad shapes or spacing (from :func:`cephalo.evaluate.metrics.offsets_mm`).
    """
    from .geometry import offsets_mm

    c = np.asarray(coords, dtype=np.float64)
    mm = offsets_mm(c, np.zeros_like(c), spacing)
    names = list(names)
    sign = np.ones(c.shape[0])
    if "sella" in names and "nasion" in names:
        dx = mm[:, names.index("nasion"), 0] - mm[:, names.index("sella"), 0]
        sign = np.where(dx < 0, -1.0, 1.0)
    out = np.empty_like(mm)
    out[..., 0] = mm[..., 0] * sign[:, None]
    out[..., 1] = -mm[..., 1]
    return out


def _evaluate(m: Measurement, frame: np.ndarray, names: list[str]) -> np.ndarray:
    pts = {n: frame[:, names.index(n)] for n in m.landmarks}
    with np.errstate(invalid="ignore", divide="ignore"):
        v = np.asarray(m.formula(pts), dtype=np.float64)
    missing = np.zeros(frame.shape[0], dtype=bool)
    for n in m.landmarks:
        missing |= ~np.isfinite(pts[n]).all(axis=1)
    v[missing | ~np.isfinite(v)] = np.nan
    return v


def compute(
    coords: np.ndarray, names: Sequence[str], spacing: np.ndarray, keys: Iterable[str] | None = None
) -> dict[str, np.ndarray]:
    """Measurements for each image.

    Args:
        coords: (N, K, 2) float, xy original-image pixels, NaN = missing (or (K, 2) for one image).
        names: K canonical landmark names (any catalogue).
        spacing: (N, 2) float mm/px (x, y) per image (anisotropic allowed), or (2,).
        keys: measurement keys; None = every measurement the landmarks support.

    Returns:
        key -> (N,) float64 in the measurement's unit (a (K, 2) input gives shape (1,)); NaN where a
        needed landmark is missing or the construction degenerates.

    Raises:
        ValueError: an unknown key, a requested measurement whose landmarks are not all in
            ``names`` (the message names the missing ones), or bad shapes/spacing.
    """
    c = np.asarray(coords, dtype=np.float64)
    if c.ndim == 2:
        c = c[None]
    names = [str(n) for n in names]
    if keys is None:
        keys = available(names)
    else:
        keys = [get_measurement(k).key for k in keys]
        for k in keys:
            miss = [n for n in MEASUREMENTS[k].landmarks if n not in names]
            if miss:
                raise ValueError(f"measurement {k} needs landmarks {miss}, not among {names[:6]}...")
    frame = patient_frame_mm(c, names, spacing)
    return {k: _evaluate(MEASUREMENTS[k], frame, names) for k in keys}


def classify(key: str, values: np.ndarray) -> np.ndarray:
    """Class labels of values of measurement ``key``: (N,) int64, 0 where the value is NaN (or the
    measurement has no classes).

    Raises:
        ValueError: unknown key.
    """
    m = get_measurement(key)
    v = np.asarray(values, dtype=np.float64)
    out = np.zeros(v.shape, dtype=np.int64)
    for band in m.classes:
        with np.errstate(invalid="ignore"):
            out[(out == 0) & band.contains(v)] = band.label
    return out


def measurement_intervals(
    coords: np.ndarray,
    names: Sequence[str],
    spacing: np.ndarray,
    radii_mm: np.ndarray,
    keys: Iterable[str] | None = None,
    step_mm: float = 0.01,
) -> dict[str, np.ndarray]:
    """Half-widths of measurement intervals implied by per-landmark prediction radii (see module doc).

    ``half_width = sum_k r_k * ||d f / d p_k||`` with ``p_k`` landmark k's mm position; gradients by
    central differences of ``step_mm`` along the patient-frame axes.

    Args:
        coords: (N, K, 2) original px; names: K canonical names; spacing: (N, 2) or (2,) mm/px.
        radii_mm: (K,) or (N, K) radii in mm (NaN = unknown -> NaN half-width for measurements using it).
        keys: as in :func:`compute`.

    Returns:
        key -> (N,) float64 half-widths in the measurement's unit.
    """
    c = np.asarray(coords, dtype=np.float64)
    if c.ndim == 2:
        c = c[None]
    names = [str(n) for n in names]
    keys = available(names) if keys is None else [get_measurement(k).key for k in keys]
    r = np.broadcast_to(np.asarray(radii_mm, dtype=np.float64), c.shape[:2])
    frame = patient_frame_mm(c, names, spacing)
    out = {}
    for k in keys:
        m = MEASUREMENTS[k]
        hw = np.zeros(c.shape[0])
        for n in m.landmarks:
            j = names.index(n)
            g2 = np.zeros(c.shape[0])
            for axis in (0, 1):
                fp, fm = frame.copy(), frame.copy()
                fp[:, j, axis] += step_mm
                fm[:, j, axis] -= step_mm
                g = (_evaluate(m, fp, names) - _evaluate(m, fm, names)) / (2 * step_mm)
                g2 = g2 + g * g
            hw = hw + r[:, j] * np.sqrt(g2)
        out[k] = hw
    return out
