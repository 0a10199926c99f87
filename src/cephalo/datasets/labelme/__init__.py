"""LabelMe JSON annotations (no release to fetch): adapter and LabelMe writer (``adapter``)."""
