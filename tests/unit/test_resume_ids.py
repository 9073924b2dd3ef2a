"""The resumable streams' wire pieces (server/resume.py): which event ids are ours, which calls are resumable, and
which SSE event is a call's final answer. Agent-written text: nothing else parses."""

from __future__ import annotations

import json

import pytest

from signoff.server.resume import (
    MAX_EVENT_ID,
    event_data,
    event_id,
    final_message,
    new_key,
    parse_event_id,
    waiting_call,
)


def test_a_given_event_id_reads_back_as_its_key_and_keys_differ() -> None:
    keys = {new_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert parse_event_id(event_id(key)) == key


@pytest.mark.parametrize(
    "text",
    [
        "",
        ".0",
        "a" * 22,  # no sequence
        "a" * 22 + ".1",  # only the priming event's id is given out
        "a" * 21 + ".0",
        "a" * 23 + ".0",
        "a" * 21 + "/.0",
        "a" * 21 + "\u202e.0",  # a bidi override
        "a" * 22 + ".0\n",
        "a" * 22 + ".0 ",
        "../../" + "a" * 16 + ".0",
        "a" * 22 + "." + "0" * MAX_EVENT_ID,
        "a" * 1_000_000,
    ],
)
def test_anything_else_is_not_an_event_id(text: str) -> None:
    assert parse_event_id(text) is None


def call(name: object = "get_status", wait: object = 30, request_id: object = 4, **extra: object) -> bytes:
    params = {"name": name, "arguments": {"request_id": "r1", "wait_seconds": wait}}
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params, **extra}).encode()


def test_waiting_calls_of_the_waiting_tools_are_resumable() -> None:
    assert waiting_call(call()) == ("get_status", 4, 30.0)
    assert waiting_call(call("request_approval", 0.5, "x")) == ("request_approval", "x", 0.5)


@pytest.mark.parametrize(
    "body",
    [
        call(wait=0),
        call(wait=-1),
        call(wait=True),
        call(wait="30"),
        call(wait=None),
        call(name="list_requests"),
        call(request_id=None),
        call(request_id=True),
        call(request_id=[1]),
        b"[" + call() + b"]",  # a batch
        b"not json",
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_status","arguments":[]}}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_status","arguments":'
        b'{"wait_seconds":1e999}}}',
    ],
)
def test_other_requests_are_not(body: bytes) -> None:
    assert waiting_call(body) is None


def test_only_the_response_to_the_call_is_its_final_message() -> None:
    assert final_message(b'{"jsonrpc":"2.0","id":4,"result":{}}', 4)
    assert final_message(b'{"jsonrpc":"2.0","id":4,"error":{"code":1,"message":"x"}}', 4)
    assert not final_message(b'{"jsonrpc":"2.0","id":"4","result":{}}', 4)
    assert not final_message(b'{"jsonrpc":"2.0","method":"notifications/progress","params":{}}', 4)
    assert not final_message(b"{not json", 4)


def test_an_events_data_lines_are_joined() -> None:
    assert event_data(b'event: message\r\ndata: {"a":\r\ndata: 1}') == b'{"a":\n1}'
    assert event_data(b": ping - 2026-01-01") is None
    assert event_data(b"id: x.0\r\nretry: 500\r\ndata: ") == b""
