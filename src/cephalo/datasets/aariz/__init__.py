"""Aariz (29 landmarks, 7 devices).

``adapter``: the adapter; ``release``: the release spec and layout; ``demo``: the demo tree writer.
"""
