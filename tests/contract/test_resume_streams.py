"""The resumable streams' contract on every engine: a stream is kept, refreshed only by its owner, claimed by one
process once its owner is gone (never while it lives, never once answered), finished once, and deleted when old."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from signoff.storage.streams import Stream, Streams

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def made(key: str = "k" * 22, *, owner: str = "a", at: datetime = T0, principal: str | None = "billing-bot") -> Stream:
    return Stream(
        key=key,
        principal=principal,
        tool="get_status",
        request='{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get_status"}}',
        owner=owner,
        alive_at=at,
        created_at=at,
    )


async def test_a_stream_reads_back_as_made_and_an_unknown_key_is_none(streams: Streams) -> None:
    await streams.open_stream(made())
    await streams.open_stream(made("n" * 22, principal=None))
    assert await streams.stream("k" * 22) == made()
    assert await streams.stream("n" * 22) == made("n" * 22, principal=None)
    assert await streams.stream("x" * 22) is None


async def test_an_owner_keeps_its_unanswered_streams_alive_in_one_write(streams: Streams) -> None:
    await streams.open_stream(made("k" * 22))
    await streams.open_stream(made("l" * 22))
    await streams.open_stream(made("m" * 22))
    await streams.open_stream(made("o" * 22, owner="b"))
    await streams.finish("l" * 22, '{"jsonrpc":"2.0","id":3,"result":{}}')
    await streams.stop("m" * 22, "a")  # stopped without an answer
    await streams.stop("o" * 22, "a")  # not a's: nothing
    later = T0 + timedelta(seconds=2)
    await streams.keep_alive("a", later)
    alive = {
        key: found.alive_at for key in ("k" * 22, "l" * 22, "m" * 22, "o" * 22) if (found := await streams.stream(key))
    }
    assert alive == {"k" * 22: later, "l" * 22: T0, "m" * 22: None, "o" * 22: T0}, alive


async def test_a_stream_is_claimed_once_its_owner_is_gone_and_by_one_process(streams: Streams) -> None:
    await streams.open_stream(made())
    later = T0 + timedelta(seconds=10)
    assert not await streams.claim("k" * 22, "b", later, stale_before=T0 - timedelta(seconds=1))  # owner alive
    assert await streams.claim("k" * 22, "b", later, stale_before=T0 + timedelta(seconds=1))
    assert not await streams.claim("k" * 22, "c", later, stale_before=T0 + timedelta(seconds=1))  # b owns it now
    found = await streams.stream("k" * 22)
    assert found is not None and (found.owner, found.alive_at) == ("b", later)
    await streams.keep_alive("a", T0 + timedelta(seconds=20))  # the old owner's late word changes nothing
    await streams.stop("k" * 22, "a")
    assert (found := await streams.stream("k" * 22)) is not None and found.alive_at == later
    assert not await streams.claim("x" * 22, "b", later, stale_before=later)  # unknown


async def test_a_stopped_stream_is_claimable_at_once_and_an_answered_one_never(streams: Streams) -> None:
    await streams.open_stream(made())
    await streams.stop("k" * 22, "a")
    assert await streams.claim("k" * 22, "b", T0, stale_before=T0 - timedelta(hours=1))
    await streams.finish("k" * 22, '{"jsonrpc":"2.0","id":3,"result":{}}')
    await streams.finish("k" * 22, '{"jsonrpc":"2.0","id":3,"error":{}}')  # the first answer stays
    found = await streams.stream("k" * 22)
    assert found is not None and found.response == '{"jsonrpc":"2.0","id":3,"result":{}}'
    assert found.request == ""  # answered: the call's body (up to 64 KiB of an agent's text) is no longer kept
    await streams.stop("k" * 22, "b")  # answered: stays answered
    assert not await streams.claim("k" * 22, "c", T0, stale_before=T0 + timedelta(hours=1))


async def test_old_streams_are_deleted(streams: Streams) -> None:
    await streams.open_stream(made("o" * 22, at=T0))
    await streams.open_stream(made("y" * 22, at=T0 + timedelta(hours=2)))
    assert await streams.delete_before(T0 + timedelta(hours=1)) == 1
    assert await streams.stream("o" * 22) is None
    assert await streams.stream("y" * 22) is not None
