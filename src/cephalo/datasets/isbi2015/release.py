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
        # 400_senior, 400_junior, 400_mean, or any other 400_<annotator> (400_a, 400_b), also
        # under a wrapper folder: the one check cephalo download and cephalo index share
        prefixed_dirs=(("AnnotationsByMD", "400_"),),
        recommended=("RawImage/Test2Data", "AnnotationsByMD/400_senior", "AnnotationsByMD/400_junior"),
    ),
    citation="Wang et al., Medical Image Analysis 31 (2016); figshare article 3471833",
    licence="unstated (research use)",
)
