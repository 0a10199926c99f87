"""CL-Detection 2023 (38 landmarks; registration required, no public archive to fetch): adapter (``adapter``)."""
