"""A real signoff server (a subprocess) and Debian's chromium driven by Playwright, for the console's tests.

Waits are on Playwright's auto-waiting locators and ``expect`` (generous timeouts), on a process's exit, or on a
port accepting connections; never sleeps."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Dialog, Page, async_playwright, expect

from signoff.server.auth import new_token
from tests.integration.support import REPO, SIGNOFF, base_env, free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 15_000  #: generous: the machine is shared; a live update normally lands well within a second

BOT, BOT_SHA = new_token()  # billing-bot, an agent owned by carol
ALICE, ALICE_SHA = new_token()
BOB, BOB_SHA = new_token()
CAROL, CAROL_SHA = new_token()
MODELER, MODELER_SHA = new_token()  # fraud-team, the model plane's operator

CONFIG = f"""
[limits]
max_payload_bytes = 2000000

[[people]]
name = "carol"
aliases = ["billing-bot"]

[[rules]]
name = "deploys need alice"
action = "deploy.*"
outcome = "review"
approvers = ["alice"]

[[rules]]
name = "transfers need two people"
action = "payments.*"
outcome = "review"
approvals_required = 2
priority = "urgent"

[[rules]]
name = "refunds go to a person first"
action = "refunds.*"
outcome = "review"
priority = "high"

[[rules]]
name = "no refunds to gift cards"
action = "refunds.*"
when = [ {{ path = "payload.method", op = "eq", value = "gift-card" }} ]
outcome = "reject"

[[schemas]]
action = "refunds.*"
[schemas.schema]
type = "object"
required = ["amount", "order"]
[schemas.schema.properties.amount]
type = "number"
maximum = 5000

[[auth.tokens]]
identity = "billing-bot"
role = "agent"
sha256 = "{BOT_SHA}"

[[auth.tokens]]
identity = "alice"
role = "reviewer"
sha256 = "{ALICE_SHA}"

[[auth.tokens]]
identity = "bob"
role = "reviewer"
sha256 = "{BOB_SHA}"

[[auth.tokens]]
identity = "carol"
role = "reviewer"
sha256 = "{CAROL_SHA}"

[[auth.tokens]]
identity = "fraud-team"
role = "models"
sha256 = "{MODELER_SHA}"
"""


@dataclass(frozen=True, slots=True)
class Served:
    base: str  #: http://127.0.0.1:PORT
    db: Path
    env: dict[str, str]
    log: Path


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, deadline: float = 30.0) -> None:
    """Return once ``port`` accepts connections; fail if the process exits first or the deadline passes."""
    waited = 0.0
    while waited < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            pass
        try:  # the pause between attempts doubles as a watch on the process
            proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            waited += 0.05
            continue
        raise AssertionError(f"signoff exited with {proc.returncode} before listening:\n{log.read_text()}")
    raise AssertionError(f"signoff did not listen on {port} within {deadline} s:\n{log.read_text()}")


@contextmanager
def running(
    args: list[str], env: dict[str, str], log: Path, port: int, cwd: Path = REPO
) -> Iterator[subprocess.Popen[bytes]]:
    """``signoff ARGS`` in ``cwd``, its output in ``log``, once it listens on ``port``; terminated afterwards."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(SIGNOFF), *args], env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=str(cwd)
        )
    try:
        wait_for_port(port, proc, log)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def http_server(root: Path) -> Iterator[Served]:
    """``signoff serve --transport http`` with the config above, on a free port."""
    (root / "signoff.toml").write_text(CONFIG)
    db = root / "signoff.db"
    env = base_env(db, SIGNOFF_CONFIG=str(root / "signoff.toml"))
    port, log = free_port(), root / "serve.log"
    with running(["serve", "--transport", "http", "--port", str(port)], env, log, port):
        yield Served(f"http://127.0.0.1:{port}", db, env, log)


@dataclass  # no slots: Playwright keeps a wrapper on bound methods' instances
class Watched:
    """What a page did that a person would not see in the text: dialogs opened, script errors, console errors."""

    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def on_page_error(self, error: Exception) -> None:
        self.errors.append(str(error))


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def new_page(browser: Browser) -> tuple[BrowserContext, Page, Watched]:
    context = await browser.new_context()
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    watched = Watched()
    page.on("dialog", watched.on_dialog)
    page.on("console", watched.on_console)
    page.on("pageerror", watched.on_page_error)
    return context, page, watched


async def sign_in(page: Page, base: str, token: str, who: str) -> None:
    await page.goto(f"{base}/sign-in")
    await page.get_by_label("Token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_text(re.compile(f"Signed in as {who}"))).to_be_visible(timeout=WAIT_MS)


async def signed_in_page(browser: Browser, base: str, token: str, who: str) -> tuple[Page, Watched]:
    _, page, watched = await new_page(browser)
    await sign_in(page, base, token, who)
    return page, watched


def row(page: Page, request_id: str) -> object:
    return page.locator(f'tr[data-request="{request_id}"]')


@asynccontextmanager
async def http_session(base: str, token: str) -> AsyncIterator[tuple[httpx2.AsyncClient, str]]:
    """A signed-in HTTP client (as a browser would be) and the session's CSRF token, read from the queue page."""
    async with httpx2.AsyncClient(base_url=base, follow_redirects=False, timeout=30) as http:
        form = await http.get("/sign-in")
        csrf = _csrf(form.text)
        signed = await http.post("/sign-in", data={"csrf": csrf, "token": token}, headers={"Origin": base})
        assert signed.status_code == 303, signed.text
        queue = await http.get("/")
        yield http, _csrf(queue.text)


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)
