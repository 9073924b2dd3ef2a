"""The console's browser tests need Debian's chromium; CI (.ci/run) installs it with apt-get when it is missing."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.browser.support import CHROMIUM, Served, http_server


@pytest.fixture(autouse=True)
def _chromium() -> None:
    if os.access(CHROMIUM, os.X_OK):
        return
    if shutil.which("apt-get") is None:
        pytest.skip(f"no chromium at {CHROMIUM} and no apt-get to install it: the console's browser tests need it")
    pytest.fail(f"no chromium at {CHROMIUM}: install it with `apt-get install -y chromium` (.ci/run does)")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One ``signoff serve --transport http`` for the module's tests; each test makes its own requests."""
    with http_server(tmp_path_factory.mktemp("console")) as server:
        yield server
