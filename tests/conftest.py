from __future__ import annotations

from pathlib import Path

import pytest

from tests.flowrun import REAL


@pytest.fixture(scope="session")
def real_dir() -> Path:
    if not REAL.is_dir():
        pytest.fail(f"real CME data not found at {REAL} (../shared must sit beside the repo)")
    return REAL

