"""How the feature extractor runs is logged once at start-up and kept out of every alert."""

from __future__ import annotations

import logging

import pytest

from dupwatch.config import Settings
from inference.embedder import load_models


def test_engine_description_is_logged_at_start_up_not_kept_in_methods(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="inference.served"):
        models = load_models(Settings())
    lines = [r.getMessage() for r in caplog.records if "serving bundle" in r.getMessage()]
    assert len(lines) == 1 and f"engine: {models.engine_description}" in lines[0]
    assert models.engine_description and "engine" not in models.methods
    assert set(models.methods) == {"features", "fine", "coarse", "selector", "clips"}
