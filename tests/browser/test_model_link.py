"""A reviewer sees, on a request's page, the model version behind it and what people made of that version lately."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.async_api import expect

from signoff.server.auth import new_token
from tests.browser.support import ALICE, BOT, CONFIG, Served, chromium, running, signed_in_page
from tests.browser.test_history import vote
from tests.integration.support import base_env, free_port
from tests.integration.test_http_auth import agent, call

pytestmark = pytest.mark.slow

MODELS, MODELS_SHA = new_token()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("model-link")
    models = f'\n[[auth.tokens]]\nidentity = "trainer"\nrole = "models"\nsha256 = "{MODELS_SHA}"\n'
    (root / "signoff.toml").write_text(CONFIG + models)
    db = root / "signoff.db"
    env = base_env(db, SIGNOFF_CONFIG=str(root / "signoff.toml"))
    port, log = free_port(), root / "serve.log"
    with running(["serve", "--transport", "http", "--port", str(port)], env, log, port):
        yield Served(f"http://127.0.0.1:{port}", db, env, log)


async def test_the_request_page_shows_the_linked_model_version_and_people_verdicts(served: Served) -> None:
    async with agent(served.base, MODELS) as trainer:
        for version in ("v1", "v2"):
            failed, _ = await call(
                trainer, "register_model_version", name="fraud", version=version, endpoint="http://x"
            )
            assert not failed
        failed, promoted = await call(trainer, "promote_model", name="fraud", version="v1", reason="first")
        assert not failed
    await vote(served.base, ALICE, promoted["change"]["request_id"], "approve")
    async with agent(served.base, BOT) as bot:
        failed, model = await call(bot, "get_model", name="fraud")  # a read applies the approval at once
        assert not failed and model["production"] == "v1", model
        failed, routed = await call(bot, "resolve_model", name="fraud", routing_key="customer-7")
        assert not failed and routed["version"] == "v1", routed
        link = {"model": "fraud", "version": "v1", "decision_id": routed["decision_id"]}
        ids = []
        for n in range(2):
            failed, status = await call(
                bot,
                "request_approval",
                action="refunds.issue",
                summary=f"refund {n}",
                payload={"amount": 5, "order": n},
                **link,
            )
            assert not failed and status["model"]["version"] == "v1", status
            ids.append(status["request_id"])
    await vote(served.base, ALICE, ids[0], "reject", "not this customer")

    async with chromium() as browser:
        page, watched = await signed_in_page(browser, served.base, ALICE, "alice")
        await page.goto(f"{served.base}/requests/{ids[1]}")
        model = page.locator("#model")
        await expect(model).to_contain_text("fraud v1")
        await expect(model).to_contain_text(routed["decision_id"])
        await expect(model).to_contain_text("2 requests named this version, 2 went to people")
        await expect(model).to_contain_text("of 1 decided by people, 100% rejected and 0% approved with changes")
        assert watched.errors == [] and watched.dialogs == []
