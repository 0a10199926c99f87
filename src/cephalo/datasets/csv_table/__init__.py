"""A CSV table of landmark coordinates (adapter ``csv``; no release to fetch): adapter (``adapter``)."""
