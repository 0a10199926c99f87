"""The demo's canonical skull: the drawn structures and the 29 Aariz landmarks, in anatomical mm.

One template of a real adult head (facing right, x right, y down), proportioned after a mean ISBI
2015 cephalogram; every landmark is a vertex or extreme point of the structure it is defined on, so
it sits on what the renderer draws. The renderer (:mod:`cephalo.demo`) perturbs and draws it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .landmarks import AARIZ29

__all__ = ["SkullTemplate", "skull_template"]


@dataclass(frozen=True)
class SkullTemplate:
    """Canonical drawing + landmarks, in anatomical mm (x right, y down, face to the right).

    Attributes:
        shapes: list of ``(kind, points (P, 2) float64 mm, value, width_mm)``; ``kind`` is
            ``"fill"`` (closed polygon filled with intensity ``value`` in [0, 1]) or ``"line"``
            (open polyline of width ``width_mm``), drawn in list order (later on top).
        landmarks: canonical landmark name -> ``(2,)`` float64 mm, all 29 Aariz landmarks.
        field_mm: ``(width, height)`` of the field of view the template is laid out in, mm.
    """

    shapes: list
    landmarks: dict
    field_mm: tuple[float, float]


def _ellipse(c, ax, ay, t0=0.0, t1=360.0, n=48) -> np.ndarray:
    t = np.deg2rad(np.linspace(t0, t1, n, endpoint=(t1 - t0) % 360 != 0))
    return np.stack([c[0] + ax * np.cos(t), c[1] + ay * np.sin(t)], axis=1)


def _tooth(apex, tip, width) -> np.ndarray:
    """Closed tooth outline: a tapered root at ``apex`` and a rounded crown ending at ``tip``."""
    apex, tip = np.asarray(apex, float), np.asarray(tip, float)
    d = tip - apex
    L = np.linalg.norm(d)
    u = d / L
    n = np.array([-u[1], u[0]])
    w = width / 2
    pts = [
        apex,
        apex + 0.35 * L * u + 0.7 * w * n,
        apex + 0.75 * L * u + w * n,
        apex + 0.93 * L * u + 0.6 * w * n,
        tip,
        apex + 0.93 * L * u - 0.6 * w * n,
        apex + 0.75 * L * u - w * n,
        apex + 0.35 * L * u - 0.7 * w * n,
    ]
    return np.array(pts)


def skull_template() -> SkullTemplate:
    """The canonical demo skull: structures and the 29 Aariz landmarks (anatomical mm).

    Proportions follow a mean ISBI 2015 cephalogram (1935 x 2400 px at 0.1 mm/px = 193.5 x 240 mm
    field, face to the right). Each landmark is a vertex or extreme point of the structure it is
    defined on, e.g. Menton is the lowest vertex of the symphysis contour, Orbitale the lowest point
    of the orbit outline, Porion the top of the ear-rod ring, Sella the centre of the fossa.

    Returns:
        :class:`SkullTemplate` (a new object on every call).
    """
    P = lambda x, y: np.array([x / 10.0, y / 10.0])  # template laid out in 0.1 mm units  # noqa: E731
    L = {
        "sella": P(810, 1000),
        "nasion": P(1390, 900),
        "orbitale": P(1240, 1150),
        "porion": P(600, 1130),
        "a_point": P(1372, 1505),
        "b_point": P(1318, 1905),
        "pogonion": P(1340, 2030),
        "menton": P(1260, 2112),
        "gnathion": P(1315, 2088),
        "gonion": P(700, 1820),
        "lower_incisor_tip": P(1398, 1702),
        "upper_incisor_tip": P(1428, 1728),
        "labrale_superius": P(1600, 1610),
        "labrale_inferius": P(1590, 1790),
        "subnasale": P(1560, 1462),
        "soft_tissue_pogonion": P(1525, 2050),
        "posterior_nasal_spine": P(900, 1440),
        "anterior_nasal_spine": P(1440, 1420),
        "articulare": P(626, 1330),
        "pronasale": P(1720, 1330),
        "ramus": P(632, 1560),
        "condylion": P(648, 1262),
        "lower_2nd_pm_cusp_tip": P(1180, 1716),
        "lower_molar_cusp_tip": P(1060, 1712),
        "upper_2nd_pm_cusp_tip": P(1195, 1692),
        "upper_incisor_apex": P(1345, 1470),
        "upper_molar_cusp_tip": P(1080, 1688),
        "lower_incisor_apex": P(1285, 1905),
        "soft_tissue_nasion": P(1462, 915),
    }
    assert set(L) == set(AARIZ29.names)
    shapes: list = []
    # soft tissue of the whole head (filled), its anterior edge is the soft-tissue profile
    profile = np.array(
        [
            P(1470, 600),
            P(1480, 760),
            L["soft_tissue_nasion"],
            P(1520, 1050),
            P(1620, 1200),
            L["pronasale"],
            P(1700, 1400),
            P(1620, 1450),
            L["subnasale"],
            P(1585, 1530),
            L["labrale_superius"],
            P(1580, 1680),
            P(1555, 1705),
            P(1575, 1740),
            L["labrale_inferius"],
            P(1550, 1880),
            P(1500, 1950),
            L["soft_tissue_pogonion"],
            P(1500, 2150),
            P(1400, 2230),
            P(1200, 2260),
            P(1050, 2300),
            P(1000, 2400),
        ]
    )
    back = np.array(
        [
            P(300, 2400),
            P(250, 1800),
            P(120, 1400),
            P(40, 1000),
            P(60, 600),
            P(250, 250),
            P(600, 60),
            P(1000, 40),
            P(1320, 160),
            P(1440, 380),
        ]
    )
    shapes.append(("fill", np.vstack([profile, back]), 0.30, 0.0))
    # cranial vault: outer table band, brain slightly darker inside
    vault = np.array(
        [
            L["nasion"],
            P(1420, 700),
            P(1380, 450),
            P(1250, 250),
            P(1000, 130),
            P(700, 120),
            P(400, 220),
            P(200, 440),
            P(110, 750),
            P(130, 1050),
            P(250, 1300),
            P(450, 1420),
        ]
    )
    inner = vault[1:-1] + np.array(
        [
            [-5.0, 4.0],
            [-4.0, 4.0],
            [-3.0, 5.0],
            [0.0, 5.0],
            [0.0, 5.0],
            [3.0, 5.0],
            [4.0, 4.0],
            [5.0, 0.0],
            [5.0, -2.0],
            [4.0, -4.0],
        ]
    )
    shapes.append(
        (
            "fill",
            np.vstack(
                [
                    vault,
                    P(820, 1000)[None],
                ]
            ),
            0.62,
            0.0,
        )
    )
    shapes.append(("fill", np.vstack([inner, P(760, 1050)[None], P(1250, 950)[None]]), 0.36, 0.0))
    # anterior cranial base and clivus (bone bands)
    shapes.append(("line", np.array([P(1330, 935), P(1100, 960), P(900, 985)]), 0.62, 3.5))
    shapes.append(("line", np.array([P(760, 1060), L["articulare"] + np.array([6.0, 0.0]), P(700, 1400)]), 0.62, 4.0))
    # sphenoid body with the sella turcica fossa (radiolucent disk; Sella = its centre)
    shapes.append(("fill", _ellipse(P(805, 1085), 13.0, 10.0), 0.66, 0.0))
    shapes.append(("fill", _ellipse(L["sella"], 4.5, 4.5), 0.34, 0.0))
    shapes.append(("line", np.array([P(745, 1000), P(765, 975)]), 0.7, 1.5))  # dorsum sellae
    shapes.append(("line", np.array([P(875, 995), P(855, 975)]), 0.7, 1.5))  # anterior clinoid
    # orbit (Orbitale = lowest point of the outline)
    shapes.append(("line", _ellipse(L["orbitale"] - np.array([0.0, 12.0]), 11.0, 12.0), 0.7, 1.2))
    # ear-rod ring (Porion = its top)
    shapes.append(("line", _ellipse(L["porion"] + np.array([0.0, 5.0]), 5.0, 5.0), 0.95, 1.2))
    # nasal bone from Nasion
    shapes.append(("line", np.array([L["nasion"], P(1430, 1000), P(1480, 1130)]), 0.65, 2.0))
    # maxilla + palate (PNS, ANS, A-point on its contour)
    maxilla = np.array(
        [
            L["posterior_nasal_spine"],
            P(1100, 1420),
            L["anterior_nasal_spine"],
            P(1390, 1455),
            L["a_point"],
            P(1385, 1560),
            P(1400, 1610),
            P(1330, 1600),
            P(1200, 1620),
            P(1050, 1610),
            P(1000, 1520),
        ]
    )
    shapes.append(("fill", maxilla, 0.58, 0.0))
    # mandible (Co, Ar, R, Go, Me, Gn, Pog, B on its outline)
    mandible = np.array(
        [
            L["condylion"],
            P(675, 1275),
            P(690, 1320),
            P(720, 1380),
            P(790, 1360),
            P(860, 1330),
            P(900, 1400),
            P(960, 1600),
            P(1050, 1740),
            P(1250, 1760),
            P(1350, 1780),
            P(1372, 1820),
            L["b_point"],
            P(1320, 1960),
            L["pogonion"],
            L["gnathion"],
            L["menton"],
            P(1100, 2000),
            P(900, 1925),
            L["gonion"],
            P(645, 1700),
            L["ramus"],
            P(625, 1420),
            L["articulare"],
            P(625, 1280),
        ]
    )
    shapes.append(("fill", mandible, 0.6, 0.0))
    # teeth (incisors from apex to tip; premolar and molar crowns ending at the cusp tips)
    shapes.append(("fill", _tooth(L["upper_incisor_apex"], L["upper_incisor_tip"], 7.0), 0.85, 0.0))
    shapes.append(("fill", _tooth(L["lower_incisor_apex"], L["lower_incisor_tip"], 6.0), 0.82, 0.0))
    up, lo = np.array([0.0, -20.0]), np.array([0.0, 20.0])
    for tip, d, w in (
        (L["upper_molar_cusp_tip"], up, 10.0),
        (L["upper_2nd_pm_cusp_tip"], up, 7.0),
        (L["lower_molar_cusp_tip"], lo, 10.0),
        (L["lower_2nd_pm_cusp_tip"], lo, 7.0),
    ):
        shapes.append(("fill", _tooth(tip + d, tip, w), 0.8, 0.0))
    return SkullTemplate(shapes=shapes, landmarks=L, field_mm=(193.5, 240.0))
