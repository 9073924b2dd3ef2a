"""A local Slack for tests: the Web API and a Socket Mode websocket on 127.0.0.1, speaking Slack's wire format.

Tests wait on it with ``await fake.wait_for(condition)``, which wakes on every call and ack it receives.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from aiohttp import WSMsgType, web


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    auth: str


@dataclass
class FakeSlack:
    calls: list[Call] = field(default_factory=list)
    acks: list[dict[str, Any]] = field(default_factory=list)
    ratelimit_next: dict[str, int] = field(default_factory=dict)  #: method -> how many 429s to answer first
    retry_after: int | str = 1  #: the Retry-After (seconds) those 429s carry; a str is sent as it is
    down: bool = False  #: answer every Web API call with HTTP 503
    #: when set, the next chat.postMessage waits for this event before Slack takes the message (a post in flight)
    hold_next_post: anyio.Event | None = None
    failing: dict[str, str] = field(default_factory=dict)  #: method -> the error Slack answers it with
    usergroups: dict[str, list[str]] = field(default_factory=dict)
    channels: dict[str, str] = field(default_factory=lambda: {"#approvals": "C0APPROVALS"})
    start_ts: float = 1_700_000_000.0  #: messages get ts start_ts + 1, + 2, ... (align it with a test's clock)
    #: top-level messages posted, as conversations.history returns them (newest last here)
    messages: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None
    _socket: web.WebSocketResponse | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _ts: float = 0.0

    def __post_init__(self) -> None:
        self._ts = self.start_ts

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def wait_for(self, condition: Callable[[], object], timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(condition)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- Web API ---------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.content_type == "application/json":
            args = await request.json()
        else:
            args = dict(await request.post())
        args.update(request.query)  # GET methods such as usergroups.users.list send their arguments here
        for key in ("blocks", "view"):
            if isinstance(args.get(key), str):
                args[key] = json.loads(args[key])
        self.calls.append(Call(method=method, args=args, auth=request.headers.get("Authorization", "")))
        await self._notify()
        if self.down:
            return web.json_response({"ok": False, "error": "service_unavailable"}, status=503)
        if method in self.failing:
            return web.json_response({"ok": False, "error": self.failing[method]})
        if self.ratelimit_next.get(method, 0) > 0:
            self.ratelimit_next[method] -= 1
            headers = {"Retry-After": str(self.retry_after)}
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429, headers=headers)
        if method == "chat.postMessage" and (held := self.hold_next_post) is not None:
            self.hold_next_post = None
            await held.wait()
        return web.json_response(self._answer(method, args, self.calls[-1].auth))

    def _answer(self, method: str, args: dict[str, Any], auth: str) -> dict[str, Any]:
        if method == "apps.connections.open":
            if not auth.startswith("Bearer xapp-"):
                return {"ok": False, "error": "invalid_auth"}
            return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/link"}
        if not auth.startswith("Bearer xoxb-"):
            return {"ok": False, "error": "not_authed"}
        if method == "auth.test":
            return {"ok": True, "user_id": "U0BOT", "user": "signoff", "team": "Acme", "team_id": "T1", "bot_id": "B1"}
        if method == "chat.postMessage":
            channel = self.channels.get(args["channel"], args["channel"])
            if not channel.startswith("C"):
                return {"ok": False, "error": "channel_not_found"}
            self._ts += 1
            ts = f"{self._ts:.6f}"
            if not args.get("thread_ts"):
                message = {"type": "message", "ts": ts, "text": args.get("text"), "metadata": args.get("metadata")}
                self.messages.append({"channel": channel, **message})
            return {"ok": True, "channel": channel, "ts": ts, "message": {"text": args.get("text")}}
        if method == "conversations.history":  # like Slack: a channel id only, newest first, metadata on request
            channel = args.get("channel", "")
            if channel not in self.channels.values():
                return {"ok": False, "error": "channel_not_found"}
            oldest = float(args.get("oldest") or 0)
            found = [m for m in reversed(self.messages) if m["channel"] == channel and float(m["ts"]) > oldest]
            with_metadata = args.get("include_all_metadata") in ("1", "true", True)
            shown = [
                {k: v for k, v in m.items() if k != "channel" and (k != "metadata" or with_metadata)}
                for m in found[: int(args.get("limit") or 100)]
            ]
            return {"ok": True, "messages": shown, "has_more": len(found) > len(shown)}
        if method == "chat.update":
            return {"ok": True, "channel": args["channel"], "ts": args["ts"]}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"{self._ts:.6f}"}
        if method == "views.open":
            return {"ok": True, "view": {"id": "V1", **args["view"]}} if args.get("trigger_id") else {"ok": False}
        if method == "usergroups.users.list":
            group = args.get("usergroup", "")
            return (
                {"ok": True, "users": self.usergroups[group]}
                if group in self.usergroups
                else {"ok": False, "error": "no_such_subteam"}
            )
        if method == "conversations.info":
            channel = args.get("channel", "")
            if channel in self.channels.values():
                return {"ok": True, "channel": {"id": channel, "name": "approvals", "is_member": True}}
            return {"ok": False, "error": "channel_not_found"}
        return {"ok": False, "error": "unknown_method"}

    # -- Socket Mode -----------------------------------------------------------------------------

    async def _link(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self._socket = socket
        await socket.send_str(json.dumps({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A1"}}))
        await self._notify()
        async for message in socket:
            if message.type == WSMsgType.TEXT:
                data = json.loads(message.data)
                if "envelope_id" in data:
                    self.acks.append(data)
                    await self._notify()
        return socket

    @property
    def connected(self) -> bool:
        return self._socket is not None and not self._socket.closed

    async def send_interaction(self, payload: dict[str, Any]) -> str:
        """Deliver an interaction over Socket Mode; returns the envelope id its ack will carry."""
        assert self._socket is not None, "no Socket Mode connection"
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": "interactive",
            "accepts_response_payload": True,
            "payload": payload,
        }
        await self._socket.send_str(json.dumps(envelope))
        return envelope_id

    def ack_for(self, envelope_id: str) -> dict[str, Any] | None:
        return next((a for a in self.acks if a["envelope_id"] == envelope_id), None)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> FakeSlack:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/link", self._link)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._socket is not None:
            await self._socket.close()
        if self._runner is not None:
            await self._runner.cleanup()


def click(*, user_id: str, username: str, action_id: str, request_id: str, channel: str, ts: str) -> dict[str, Any]:
    """A block_actions payload: someone pressed a button on a message."""
    return {
        "type": "block_actions",
        "user": {"id": user_id, "username": username, "name": username, "team_id": "T1"},
        "api_app_id": "A1",
        "team": {"id": "T1", "domain": "acme"},
        "container": {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": False},
        "trigger_id": f"{time.time():.0f}.1.trigger",
        "channel": {"id": channel, "name": "approvals"},
        "message": {"type": "message", "ts": ts, "text": "Approval needed"},
        "response_url": f"http://127.0.0.1:1/actions/T1/{uuid.uuid4().hex}",
        "actions": [
            {"type": "button", "action_id": action_id, "block_id": "signoff_actions", "value": request_id,
             "action_ts": f"{time.time():.6f}"}
        ],
    }  # fmt: skip


def submission(*, user_id: str, username: str, view: dict[str, Any], reason: str) -> dict[str, Any]:
    """A view_submission payload: the reviewer submitted the reject-reason modal."""
    state = {"values": {"reason": {"text": {"type": "plain_text_input", "value": reason}}}}
    return {
        "type": "view_submission",
        "user": {"id": user_id, "username": username, "name": username, "team_id": "T1"},
        "team": {"id": "T1"},
        "view": {**view, "id": "V1", "state": state},
    }
