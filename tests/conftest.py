"""Shared test set-up: the reference material lives in $VIDACT_SHARED (default ../shared)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VIDACT_SHARED", REPO.parent / "shared")).resolve()

torch.set_num_threads(2)


def shared_path(*parts: str) -> Path:
    """A file of the shared reference material; missing is a failure, not a skip."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"shared reference file missing: {path} (set VIDACT_SHARED)")
    return path


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"shared reference folder missing: {SHARED} (set VIDACT_SHARED)")
    return SHARED


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Keep every test's weight cache out of the user's real cache."""
    monkeypatch.setenv("VIDACT_HOME", str(tmp_path_factory.mktemp("vidact_home")))
