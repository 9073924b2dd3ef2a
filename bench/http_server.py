"""Figure 2's server process: what ``signoff serve --transport http`` runs, plus the benchmark's no-op tool.

The no-op cannot be added to ``signoff serve`` without changing product code, so this script repeats
the three lines of ``server.cli`` that matter (settings, logging to stderr at INFO, ``build_server``),
adds the tool, and serves with ``server.app.serve_http`` exactly as the CLI does.
Run by figure 2 as ``python -m bench.http_server DB PORT``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench.floor_tools import add_noop
from signoff.server.app import build_server, serve_http
from signoff.server.cli import configure_logging
from signoff.server.config import Settings


def main(db: str, port: int) -> None:
    settings = Settings.from_env({}, db_path=Path(db))
    configure_logging(settings.log_level)
    server = build_server(settings)
    add_noop(server)
    serve_http(server, settings, host="127.0.0.1", port=port)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
