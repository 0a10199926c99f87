"""ISBI 2015 (19 landmarks): adapter (``adapter``), release and layout (``release``)."""
