"""The ``signoff`` command on a database that cannot grow: run as ``python -m tests.security.full_disk ARGS``.

Every connection signoff opens also gets ``PRAGMA max_page_count = 1``; SQLite keeps the database at its current
size instead (or one page, when new), so any write that needs a new page fails with SQLITE_FULL, "database or disk is
full", exactly as on a full disk (no mount needed).
"""

from __future__ import annotations

import sys

from signoff.server.cli import main
from signoff.storage import sqlite_db

sqlite_db.PRAGMAS = (*sqlite_db.PRAGMAS, "PRAGMA max_page_count = 1")
sqlite_db.WRITER_PRAGMAS = (*sqlite_db.WRITER_PRAGMAS, "PRAGMA max_page_count = 1")

if __name__ == "__main__":
    sys.exit(main())
