"""cephalo: a reproducible pipeline for cephalometric landmark detection."""

__version__ = "0.1.0"
