"""Checkpoint formats, the model zoo catalogue and the download cache."""
