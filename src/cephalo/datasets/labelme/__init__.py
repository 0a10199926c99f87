"""LabelMe JSON annotations.

``adapter``: the adapter and the LabelMe writer. No release spec: the files are the user's own.
"""
