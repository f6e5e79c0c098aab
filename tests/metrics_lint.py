"""The ``promtool`` fixture and the exposition checks shared by the metrics tests.

Import the fixture into a test module (``from tests.metrics_lint import promtool``). It finds or
fetches promtool (``dupwatch.testing.promtool``); without it the test fails with one line
(skips with ``DUPWATCH_SKIP_MISSING_SERVICES=1``, like the other test services).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dupwatch.testing.errors import ServiceUnavailable
from dupwatch.testing.promtool import check_metrics, ensure_promtool


@pytest.fixture(scope="session")
def promtool() -> Path:
    try:
        return ensure_promtool()
    except ServiceUnavailable as exc:
        if os.environ.get("DUPWATCH_SKIP_MISSING_SERVICES") == "1":
            pytest.skip(f"promtool unavailable: {exc}")
        pytest.fail(f"promtool unavailable: {exc}", pytrace=False)


def assert_exposition_clean(promtool: Path, body: bytes | str) -> None:
    """``promtool check metrics`` passes with no lint message, and no ``*_created`` series."""
    text = body.decode() if isinstance(body, bytes) else body
    code, output = check_metrics(promtool, text)
    assert code == 0 and not output, f"promtool check metrics: {output}"
    created = sorted({line.split("{")[0].split(" ")[0] for line in text.splitlines()
                      if line and not line.startswith("#") and line.split("{")[0].split(" ")[0].endswith("_created")})
    assert not created, created
