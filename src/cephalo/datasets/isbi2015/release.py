"""The ISBI 2015 release: figshare article 3471833 (private link; RAR archives), and its layout.

Source: Wang et al., Medical Image Analysis 31 (2016). The authors publish no checksums, so a
download warns (``MissingChecksumWarning``) with the SHA-256 to pin in params.
"""

from __future__ import annotations

from ..fetch.spec import Layout, Release, ReleaseFile

__all__ = ["RELEASE"]

RELEASE = Release(
    name="isbi2015",
    files=(
        ReleaseFile(
            # figshare's bulk download of the private-link article: a zip holding
            # RawImage.rar, AnnotationsByMD.rar and EvaluationCode.rar.
            name="isbi2015_figshare_3471833.zip",
            url="https://figshare.com/ndownloader/articles/3471833?private_link=37ec464af8e81ae6ebbf",
            known_hash=None,
            size=None,
        ),
    ),
    layout=Layout(
        nonempty_dirs=("RawImage/TrainingData", "RawImage/Test1Data"),
        dirs=("AnnotationsByMD",),
        any_of=(
            (
                "AnnotationsByMD/400_senior",
                "AnnotationsByMD/400_junior",
                "AnnotationsByMD/400_mean",
            ),
        ),
        recommended=("RawImage/Test2Data", "AnnotationsByMD/400_senior", "AnnotationsByMD/400_junior"),
    ),
    citation="Wang et al., Medical Image Analysis 31 (2016); figshare article 3471833",
    licence="unstated (research use)",
)
