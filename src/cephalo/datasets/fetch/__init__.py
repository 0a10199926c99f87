"""Fetching a data set release: generic machinery, no data-set knowledge.

- :mod:`.spec` -- what a release is (:class:`~.spec.Release`, :class:`~.spec.Layout`); each data
  set's own release lives beside its adapter (``cephalo.datasets.<name>.release``).
- :mod:`.release` -- :func:`~.release.fetch_release`, the all-or-nothing driver behind ``cephalo download``.
- :mod:`.http` -- the resumable HTTP client (pooch cache, HTTP ``Range``).
- :mod:`.archive` -- archive sniffing by content, safe unpacking (zip, tar, RAR), folder copy.
- :mod:`.hashing` -- pinned checksums and SHA-256 of archives.
- :mod:`.layout` -- the one layout check that ``cephalo download`` and ``cephalo index`` share.

Sources of the releases: each data set's ``release`` module (Aariz: figshare article 27986417 v1,
DOI 10.6084/m9.figshare.27986417.v1, CC BY 4.0, arXiv 2302.07797; ISBI 2015: Wang et al., Medical
Image Analysis 31 (2016), figshare article 3471833, private link, RAR archives, no published
checksums).
"""
