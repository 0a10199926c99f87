"""CL-Detection 2023 (38 landmarks).

``adapter``: the adapter. No release spec: the data needs a registration, there is no public archive.
"""
