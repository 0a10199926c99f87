"""The Aariz release: figshare article 27986417 v1 (one zip, root folder ``Aariz/``), and its layout.

Source: DOI 10.6084/m9.figshare.27986417.v1, CC BY 4.0; Khalid et al., arXiv 2302.07797 /
Scientific Data 12, 1336 (2025). ``cephalo download aariz`` checks the unpacked tree against
:data:`RELEASE` ``.layout`` and ``cephalo index`` (the adapter) checks the folder it reads against the
same layout (:func:`cephalo.datasets.fetch.layout.check_release_layout`).
"""

from __future__ import annotations

from ..fetch.spec import Layout, Release, ReleaseFile

__all__ = ["RELEASE"]

_SPLITS = ("train", "valid", "test")

RELEASE = Release(
    name="aariz",
    files=(
        ReleaseFile(
            name="Aariz.zip",
            url="https://ndownloader.figshare.com/files/51041642",
            known_hash="md5:e0bd645bca6759abdae4f199d841bda6",
            size=2_098_209_792,
        ),
    ),
    layout=Layout(
        nonempty_dirs=tuple(f"Aariz/{s}/Cephalograms" for s in _SPLITS)
        + tuple(f"Aariz/{s}/Annotations/Cephalometric Landmarks/Senior Orthodontists" for s in _SPLITS),
        dirs=tuple(f"Aariz/{s}/Annotations/Cephalometric Landmarks/Junior Orthodontists" for s in _SPLITS),
        files=("Aariz/cephalogram_machine_mappings.csv",),
        recommended=tuple(f"Aariz/{s}/Annotations/CVM Stages" for s in _SPLITS) + ("Aariz/Readme.txt",),
    ),
    citation="figshare 10.6084/m9.figshare.27986417.v1; arXiv 2302.07797; Sci Data 12, 1336 (2025)",
    licence="CC BY 4.0",
)
