"""Aariz (29 landmarks, 7 devices): adapter (``adapter``), release and layout (``release``)."""
