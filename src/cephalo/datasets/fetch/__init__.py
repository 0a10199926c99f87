"""Fetching a data set release: generic machinery, no data-set knowledge.

- :mod:`.spec` -- what a release is (:class:`~.spec.Release`, :class:`~.spec.Layout`); each data
  set's own release lives beside its adapter (``cephalo.datasets.<name>.release``).
- :mod:`.release` -- :func:`~.release.fetch_release`, the all-or-nothing driver behind ``cephalo download``.
- :mod:`.http` -- the resumable HTTP client (pooch cache, HTTP ``Range``).
- :mod:`.archive` -- archive sniffing by content, safe unpacking (zip, tar, RAR), folder copy.
- :mod:`.hashing` -- pinned checksums and SHA-256 of archives.
- :mod:`.layout` -- the one layout check that ``cephalo download`` and ``cephalo index`` share.

Where each release is published, its licence and citation: the data set's own ``release`` module.
"""
