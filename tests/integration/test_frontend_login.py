"""The sign-in page of the SPA in headless Chromium, against real nginx (the frontend's own
configuration), the Flask backend and real PostgreSQL/SeaweedFS (the `live_stack` of
test_frontend): signing in and out, the one refusal sentence, and that nothing but the sign-in
page is shown before it. The page is CSP-clean: no inline script, style or handler."""

from __future__ import annotations

import re

import pytest

from tests.integration.test_frontend import STATIC, LiveStack, browser, live_stack, new_page, shot  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def test_sign_in_use_the_app_and_sign_out(browser, live_stack: LiveStack) -> None:  # noqa: F811
    page = new_page(browser, 1280, 800)  # not signed in
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text) if message.type == "error" else None)
    page.goto(live_stack.url + "/#/jobs")
    page.wait_for_selector("#login-form")
    assert page.title() == "Sign in — IsletNet"
    assert not page.locator("#nav").is_visible() and not page.locator("#sign-out").is_visible()
    cookie_names = [cookie["name"] for cookie in page.context.cookies()]
    assert "isletnet_session" not in cookie_names

    # A wrong password and an unknown account read the same.
    page.fill("#login-username", live_stack.username)
    page.fill("#login-password", "not the password")
    page.get_by_role("button", name="Sign in").click()
    wrong = page.locator("#login-error").inner_text()
    page.fill("#login-username", "nobody")
    page.fill("#login-password", "not the password")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_function("() => document.querySelector('#login-error') && "
                           "!document.querySelector('button[type=submit]').disabled")
    assert page.locator("#login-error").inner_text() == wrong == "The user name or password is wrong."
    shot(page, "login-refused-1280")

    page.fill("#login-username", live_stack.username)
    page.fill("#login-password", live_stack.password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Jobs").wait_for()
    page.get_by_text("No jobs yet").wait_for()
    assert page.locator("#sign-out").inner_text() == f"Sign out {live_stack.username}"
    session = next(cookie for cookie in page.context.cookies() if cookie["name"] == "isletnet_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # invisible to scripts
    shot(page, "jobs-signed-in-1280")

    page.get_by_role("button", name=re.compile("^Sign out")).click()
    page.wait_for_selector("#login-form")
    page.goto(live_stack.url + "/#/jobs")
    page.wait_for_selector("#login-form")
    assert page.errors == []
    assert [text for text in console if "401" not in text] == []


def test_the_spa_has_no_inline_script_style_or_handlers() -> None:
    html = (STATIC / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+=", html)
    for script in (STATIC / "js").rglob("*.js"):
        text = script.read_text()
        assert "innerHTML" not in text and "eval(" not in text and "new Function" not in text, script
