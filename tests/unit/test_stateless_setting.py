"""SIGNOFF_HTTP_STATELESS and `serve --stateless`: off by default, on/off understood, anything else a clear error."""

from __future__ import annotations

import pytest

from signoff.server.cli import main
from signoff.server.config import Settings
from signoff.storage import ConfigError

DB = {"SIGNOFF_DB": "/tmp/signoff-stateless-setting.db"}


def test_stateless_is_off_unless_asked() -> None:
    assert Settings.from_env(DB).http_stateless is False
    assert Settings.from_env({**DB, "SIGNOFF_HTTP_STATELESS": "on"}).http_stateless is True
    assert Settings.from_env({**DB, "SIGNOFF_HTTP_STATELESS": "OFF"}).http_stateless is False


def test_a_wrong_value_says_what_to_use() -> None:
    with pytest.raises(ConfigError, match=r"SIGNOFF_HTTP_STATELESS='sometimes'; use on or off"):
        Settings.from_env({**DB, "SIGNOFF_HTTP_STATELESS": "sometimes"})


def test_stateless_on_stdio_is_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--stateless", "--db", DB["SIGNOFF_DB"]]) == 1
    err = capsys.readouterr().err
    assert "--stateless is for --transport http" in err and err.count("\n") == 1, err
