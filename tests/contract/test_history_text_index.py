"""History text search through the trigram indexes (migration 0016): the same answers as reading every row."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from signoff.storage import RequestQuery, Store
from signoff.storage.approvals.sqlite import SqliteStore
from tests.contract.test_history_search import ids
from tests.factories import add


async def test_the_index_never_widens_what_matches(store: Store) -> None:
    mueller = await add(store, action="email.send", summary="Newsletter for Müller", agent_id="mailer")
    quoted = await add(store, action="crm.note", summary='He said "stop" twice \\ then left', agent_id="crm-bot")
    split = await add(store, action="files.ab", summary="cdef", agent_id="gh")
    assert await ids(store, text="MÜLLER") == set()  # only ASCII letters fold, as documented
    assert await ids(store, text="MüLLER") == {mueller.id}
    assert await ids(store, text="for Müller") == {mueller.id}
    assert await ids(store, text='said "STOP"') == {quoted.id}  # quotes are themselves
    assert await ids(store, text="\\ then") == {quoted.id}  # and so is a backslash
    assert await ids(store, text="abcd") == set()  # the end of one field and the start of the next are not words
    assert await ids(store, text="ab") == {split.id}  # shorter than the index's trigrams: still found
    assert await ids(store, text="FILES.AB") == {split.id}
    assert await ids(store, text="cdefg") == set()


async def test_a_search_matching_many_rows_pages_newest_first(store: Store) -> None:
    made = [await add(store, summary=f"Refund order {n}") for n in range(12)]
    first = await store.list_requests(RequestQuery(text="refund ORDER", limit=5))
    second = await store.list_requests(RequestQuery(text="refund ORDER", limit=5, before=first.next_cursor))
    assert [r.id for r in (*first.items, *second.items)] == [r.id for r in reversed(made)][:10]


async def test_the_sqlite_index_is_filled_at_the_upgrade_and_follows_edits(tmp_path: Path) -> None:
    path = tmp_path / "signoff.db"
    store = await SqliteStore.open(path)
    try:
        old = await add(store, summary="Rotate the staging keys")
    finally:
        await store.close()
    with closing(sqlite3.connect(path)) as conn, conn:  # as a database from before migration 0016 was
        conn.executescript(
            "DROP TRIGGER requests_text_insert; DROP TRIGGER requests_text_update; DROP TRIGGER requests_text_delete;"
            "DROP TABLE requests_text; DELETE FROM schema_migrations WHERE version = 16;"
        )
    store = await SqliteStore.open(path)  # migrates again: the index is built from the rows there
    try:
        assert await ids(store, text="staging keys") == {old.id}
        with closing(sqlite3.connect(path)) as conn, conn:  # an edit behind signoff's back (audit verify sees it)
            conn.execute("DROP TRIGGER requests_fixed_fields")
            conn.execute("UPDATE requests SET summary = 'Rotate the production keys' WHERE id = ?", (old.id,))
        assert await ids(store, text="staging keys") == set()
        assert await ids(store, text="production keys") == {old.id}
    finally:
        await store.close()
