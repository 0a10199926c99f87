"""Landmark catalogues and name-based mapping between them.

A :class:`Catalogue` is an ordered list of :class:`Landmark` s. The order is the
channel order of a model's heatmap head and the column order of every
``(K, 2)`` landmark array; *mapping between catalogues is always by name*
(``Landmark.name``), never by position.

Canonical names are short, upper-case-free identifiers shared by all catalogues
(``"sella"``, ``"nasion"``, ...), so that ISBI 2015 landmark 1 and Aariz
landmark 10 are the same ``"sella"``.

Sources:
- ISBI 2015: Wang et al., "A benchmark for comparison of dental radiography
  analysis algorithms", Medical Image Analysis 31 (2016); file order of the
  challenge's ``.txt`` annotations.
- Aariz: Khalid et al., arXiv 2302.07797 / Scientific Data 12, 1336 (2025);
  official order and ``landmark_id`` values of the figshare release
  (DOI 10.6084/m9.figshare.27986417.v1).
- CL-Detection 2023: MICCAI challenge, landmarks ``"1"`` .. ``"38"``; the first
  19 are the ISBI 2015 landmarks in ISBI order (challenge documentation).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "landmark_symbols",
    "Landmark",
    "Catalogue",
    "ISBI19",
    "AARIZ29",
    "CLDETECTION38",
    "CATALOGUES",
    "get_catalogue",
    "catalogue_from_params",
    "map_by_name",
]


@dataclass(frozen=True)
class Landmark:
    """One anatomical landmark.

    Attributes:
        name: canonical cross-catalogue name (``"sella"``); the key of every mapping.
        title: human title as the source writes it (``"Sella"``).
        symbol: abbreviation as the source writes it (``"S"``, ``"N`"``).
        source_id: the source's own identifier (Aariz ``landmark_id`` cuid, the
            1-based ISBI number as a string, the CL-Detection number), or ``""``.
    """

    name: str
    title: str
    symbol: str
    source_id: str = ""


@dataclass(frozen=True)
class Catalogue:
    """An ordered landmark set.

    Raises:
        ValueError: on construction, if names or symbols are duplicated.
    """

    key: str
    landmarks: tuple[Landmark, ...]
    _by_name: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [lm.name for lm in self.landmarks]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"catalogue {self.key!r}: duplicated landmark names {dup}")
        symbols = [lm.symbol for lm in self.landmarks]
        dup = sorted({s for s in symbols if symbols.count(s) > 1})
        if dup:
            raise ValueError(f"catalogue {self.key!r}: duplicated landmark symbols {dup}")
        object.__setattr__(self, "_by_name", {lm.name: i for i, lm in enumerate(self.landmarks)})

    def __len__(self) -> int:
        return len(self.landmarks)

    def __iter__(self):
        return iter(self.landmarks)

    def __getitem__(self, i: int) -> Landmark:
        return self.landmarks[i]

    @property
    def names(self) -> list[str]:
        """Canonical names in catalogue order."""
        return [lm.name for lm in self.landmarks]

    @property
    def symbols(self) -> list[str]:
        return [lm.symbol for lm in self.landmarks]

    def index(self, name: str) -> int:
        """Position of canonical ``name``. Raises KeyError naming the catalogue."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"landmark {name!r} is not in catalogue {self.key!r}") from None

    def lookup(self, key: str) -> Landmark:
        """Find a landmark by canonical name, symbol, title or source id (exact match).

        Raises:
            KeyError: if nothing matches.
        """
        for lm in self.landmarks:
            if key in (lm.name, lm.symbol, lm.title, lm.source_id):
                return lm
        raise KeyError(f"no landmark {key!r} in catalogue {self.key!r}")


def _cat(key: str, rows: Iterable[tuple[str, str, str, str]]) -> Catalogue:
    return Catalogue(key, tuple(Landmark(n, t, s, i) for n, t, s, i in rows))


# ISBI 2015, file order (1-based numbers as source ids).
ISBI19 = _cat(
    "isbi19",
    [
        ("sella", "Sella", "S", "1"),
        ("nasion", "Nasion", "N", "2"),
        ("orbitale", "Orbitale", "Or", "3"),
        ("porion", "Porion", "Po", "4"),
        ("a_point", "Subspinale (A-point)", "A", "5"),
        ("b_point", "Supramentale (B-point)", "B", "6"),
        ("pogonion", "Pogonion", "Pog", "7"),
        ("menton", "Menton", "Me", "8"),
        ("gnathion", "Gnathion", "Gn", "9"),
        ("gonion", "Gonion", "Go", "10"),
        ("lower_incisor_tip", "Lower incisal incision", "LIT", "11"),
        ("upper_incisor_tip", "Upper incisal incision", "UIT", "12"),
        ("labrale_superius", "Upper lip", "Ls", "13"),
        ("labrale_inferius", "Lower lip", "Li", "14"),
        ("subnasale", "Subnasale", "Sn", "15"),
        ("soft_tissue_pogonion", "Soft tissue pogonion", "Pog`", "16"),
        ("posterior_nasal_spine", "Posterior nasal spine", "PNS", "17"),
        ("anterior_nasal_spine", "Anterior nasal spine", "ANS", "18"),
        ("articulare", "Articulare", "Ar", "19"),
    ],
)

# Aariz, official order with the release's landmark_id values.
AARIZ29 = _cat(
    "aariz29",
    [
        ("a_point", "A-point", "A", "ckr20ld7v4a4r0za3gqkydid2"),
        ("anterior_nasal_spine", "Anterior Nasal Spine", "ANS", "ckr6rysyb3jyi0y303gbq84ks"),
        ("b_point", "B-point", "B", "ckr6rysyb3jyk0y301dcyhf9q"),
        ("menton", "Menton", "Me", "ckr6rysyc3jym0y307w5s1g4a"),
        ("nasion", "Nasion", "N", "ckr6rysyc3jyo0y3083er4fow"),
        ("orbitale", "Orbitale", "Or", "ckr6rysyc3jyq0y306afa3t9a"),
        ("pogonion", "Pogonion", "Pog", "ckr6rysyd3jys0y30gd1rahjp"),
        ("posterior_nasal_spine", "Posterior Nasal Spine", "PNS", "ckr6rysyd3jyu0y30ah3205y8"),
        ("pronasale", "Pronasale", "Pn", "ckr6rysyd3jyw0y30hbbkfcb2"),
        ("ramus", "Ramus", "R", "ckr6rysye3jyy0y30h8n07rrl"),
        ("sella", "Sella", "S", "ckr6rysye3jz00y30fzx36g43"),
        ("articulare", "Articulare", "Ar", "ckr6rysye3jz20y303mmleb3m"),
        ("condylion", "Condylion", "Co", "ckr6rysye3jz40y309hjl6dp2"),
        ("gnathion", "Gnathion", "Gn", "ckr6rysyf3jz60y30d6ir73i6"),
        ("gonion", "Gonion", "Go", "ckr6rysyf3jz80y308ruj39bx"),
        ("porion", "Porion", "Po", "ckr6rysyf3jza0y3010od7lu3"),
        ("lower_2nd_pm_cusp_tip", "Lower 2nd PM Cusp Tip", "LPM", "ckr6rysyf3jzc0y30bjsl17p5"),
        ("lower_incisor_tip", "Lower Incisor Tip", "LIT", "ckr6rysyf3jze0y308g246gqv"),
        ("lower_molar_cusp_tip", "Lower Molar Cusp Tip", "LMT", "ckr6rysyf3jzg0y3004pzauxj"),
        ("upper_2nd_pm_cusp_tip", "Upper 2nd PM Cusp Tip", "UPM", "ckr6rysyf3jzi0y303zh895ny"),
        ("upper_incisor_apex", "Upper Incisor Apex", "UIA", "ckr6rysyg3jzk0y303unk9msw"),
        ("upper_incisor_tip", "Upper Incisor Tip", "UIT", "ckr6rysyg3jzm0y30e4r55szn"),
        ("upper_molar_cusp_tip", "Upper Molar Cusp Tip", "UMT", "ckr6rysyg3jzo0y309pc56jgb"),
        ("lower_incisor_apex", "Lower Incisor Apex", "LIA", "ckr6rysyg3jzq0y309625913x"),
        ("labrale_inferius", "Labrale inferius", "Li", "ckr6rysyg3jzs0y30533sccfw"),
        ("labrale_superius", "Labrale superius", "Ls", "ckr6rysyg3jzu0y308e25br5c"),
        ("soft_tissue_nasion", "Soft Tissue Nasion", "N`", "ckr6rysyg3jzw0y30cnaufc5r"),
        ("soft_tissue_pogonion", "Soft Tissue Pogonion", "Pog`", "ckr6rysyh3jzy0y30dqpoar9x"),
        ("subnasale", "Subnasale", "Sn", "ckr6rysyh3k000y302tpa6jn2"),
    ],
)


def _cldetection38() -> Catalogue:
    # The first 19 CL-Detection 2023 landmarks are the ISBI 2015 landmarks in ISBI order;
    # 20..38 are known here by number only (challenge release numbering).
    rows = [(lm.name, lm.title, str(i + 1), str(i + 1)) for i, lm in enumerate(ISBI19)]
    rows += [(f"cl{i}", f"CL-Detection landmark {i}", str(i), str(i)) for i in range(20, 39)]
    return _cat("cldetection38", rows)


CLDETECTION38 = _cldetection38()

CATALOGUES: dict[str, Catalogue] = {c.key: c for c in (ISBI19, AARIZ29, CLDETECTION38)}


def get_catalogue(key: str) -> Catalogue:
    """Return a built-in catalogue by key.

    Raises:
        ValueError: unknown key; the message lists the valid keys.
    """
    try:
        return CATALOGUES[key]
    except KeyError:
        raise ValueError(f"unknown landmark catalogue {key!r}; valid: {sorted(CATALOGUES)}") from None


def catalogue_from_params(spec: str | Mapping | Sequence) -> Catalogue:
    """Build a catalogue from a params entry.

    ``spec`` is either a built-in key (``"isbi19"``), or a mapping
    ``{"key": "my_clinic", "landmarks": [{"name":..., "title":..., "symbol":...}, ...]}``,
    or a plain list of such landmark dicts (key ``"custom"``). A landmark dict
    may instead give ``like: <catalogue>:<name>`` to reuse a built-in landmark
    (so mapping to ISBI/Aariz by name works).

    Raises:
        ValueError: malformed entries, unknown built-in names, duplicates.
    """
    if isinstance(spec, str):
        return get_catalogue(spec)
    if isinstance(spec, Mapping):
        key = str(spec.get("key", "custom"))
        items = spec.get("landmarks")
    else:
        key, items = "custom", spec
    if not items:
        raise ValueError("custom landmark catalogue: 'landmarks' must be a non-empty list")
    out = []
    for n, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ValueError(f"custom landmark catalogue {key!r}: entry {n} is not a mapping: {item!r}")
        if "like" in item:
            cat_key, _, name = str(item["like"]).partition(":")
            base = get_catalogue(cat_key)[get_catalogue(cat_key).index(name)]
            out.append(
                Landmark(
                    base.name,
                    item.get("title", base.title),
                    item.get("symbol", base.symbol),
                    str(item.get("source_id", base.source_id)),
                )
            )
            continue
        if "name" not in item:
            raise ValueError(f"custom landmark catalogue {key!r}: entry {n} has no 'name'")
        out.append(
            Landmark(
                str(item["name"]),
                str(item.get("title", item["name"])),
                str(item.get("symbol", item["name"])),
                str(item.get("source_id", "")),
            )
        )
    return Catalogue(key, tuple(out))


def map_by_name(source: Catalogue, target: Catalogue) -> list[tuple[int, int]]:
    """Pairs ``(source_index, target_index)`` of landmarks present in both, by canonical name.

    Ordered by target index. ISBI19 -> AARIZ29 gives 19 pairs; the 10 Aariz-only
    landmarks (Pn, R, Co, LPM, LMT, UPM, UIA, UMT, LIA, N`) have no pair.
    """
    src = {lm.name: i for i, lm in enumerate(source)}
    return [(src[lm.name], j) for j, lm in enumerate(target) if lm.name in src]


def landmark_symbols(names: Sequence[str]) -> list[str]:
    """Symbols (``"S"``, ``"N"``) of canonical landmark names, from the catalogue that holds them all
    (an exact catalogue first, then ISBI-19, Aariz-29, CL-Detection-38 per name); ``""`` if unknown."""
    names = list(names)
    for cat in CATALOGUES.values():
        if cat.names == names:
            return cat.symbols
    for cat in CATALOGUES.values():
        if all(n in cat.names for n in names):
            return [cat[cat.index(n)].symbol for n in names]
    out = []
    for n in names:
        sym = ""
        for cat in CATALOGUES.values():
            if n in cat.names:
                sym = cat[cat.index(n)].symbol
                break
        out.append(sym)
    return out
