"""ISBI 2015 (19 landmarks).

``adapter``: the adapter; ``release``: the release spec and layout; ``demo``: the demo tree writer.
"""
