"""A CSV table of landmark coordinates (adapter name ``csv``).

``adapter``: the adapter. No release spec: the table is the user's own.
"""
