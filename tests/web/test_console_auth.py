"""Signing in to the console: cookies, CSRF, throttling, language."""

from __future__ import annotations

import re

from tests.fixtures.factories import DEFAULT_PASSWORD, console_login, create_user, signed_in


class TestLogin:
    async def test_login_sets_session_and_opens_console(self, client, session):
        await create_user(session, email="agent@example.com", role="agent")
        response = await console_login(client, "agent@example.com")
        assert response.status_code == 303
        assert response.headers["location"] == "/"
        cookie = response.headers["set-cookie"]
        assert "parley_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
        inbox = await client.get("/inbox", headers={"Accept": "text/html"})
        assert inbox.status_code == 200
        assert "Inbox" in inbox.text

    async def test_wrong_password_shows_error(self, client, session):
        await create_user(session, email="agent@example.com")
        response = await console_login(client, "agent@example.com", "wrong password")
        assert response.status_code == 401
        assert "Wrong email or password" in response.text
        assert "parley_session" not in client.cookies

    async def test_pages_redirect_to_login_when_signed_out(self, client):
        response = await client.get("/settings/users", headers={"Accept": "text/html"})
        assert response.status_code == 303
        assert response.headers["location"] == "/login?next=/settings/users"

    async def test_ten_failures_in_a_minute_lock_the_account(self, client, session):
        await create_user(session, email="target@example.com")
        for _ in range(10):
            response = await console_login(client, "target@example.com", "guess")
            assert response.status_code == 401
        # Even the right password is refused while the account is throttled.
        response = await console_login(client, "target@example.com", DEFAULT_PASSWORD)
        assert response.status_code == 429
        assert "Too many failed attempts" in response.text
        # Another account is not affected.
        await create_user(session, email="other@example.com")
        assert (await console_login(client, "other@example.com")).status_code == 303

    async def test_login_form_without_its_csrf_cookie_is_refused(self, client, session):
        await create_user(session, email="agent@example.com")
        response = await client.post(
            "/login",
            data={"email": "agent@example.com", "password": DEFAULT_PASSWORD, "csrf_token": "forged"},
        )
        assert response.status_code == 403

    async def test_next_cannot_redirect_off_site(self, client, session):
        await create_user(session, email="agent@example.com")
        page = await client.get("/login?next=https://evil.example/")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        response = await client.post(
            "/login",
            data={
                "email": "agent@example.com",
                "password": DEFAULT_PASSWORD,
                "csrf_token": token,
                "next": "//evil.example/",
            },
        )
        assert response.headers["location"] == "/"

    async def test_logout_ends_the_session(self, client, session):
        await create_user(session, email="agent@example.com")
        browser = await signed_in(client, "agent@example.com")
        response = await client.post("/logout", data={"csrf_token": browser.csrf})
        assert response.status_code == 303
        assert (await client.get("/api/v1/me")).status_code == 401


class TestCsrf:
    async def test_cookie_write_without_csrf_token_is_403(self, client, session):
        await create_user(session, email="admin@example.com", role="administrator")
        await signed_in(client, "admin@example.com")
        response = await client.post(
            "/api/v1/teams", json={"name": "Sneaky"}, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 403
        assert "CSRF" in response.json()["detail"]

    async def test_cookie_write_with_csrf_token_works(self, client, session):
        await create_user(session, email="admin@example.com", role="administrator")
        browser = await signed_in(client, "admin@example.com")
        response = await client.post("/api/v1/teams", json={"name": "Legit"}, headers=browser.headers())
        assert response.status_code == 201


class TestLanguage:
    async def test_login_page_follows_browser_language(self, client):
        response = await client.get("/login", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
        assert '<html lang="zh-CN">' in response.text
        assert "登录" in response.text

    async def test_traditional_chinese_browser_gets_english(self, client):
        response = await client.get("/login", headers={"Accept-Language": "zh-TW"})
        assert '<html lang="en">' in response.text

    async def test_user_locale_wins_over_browser(self, client, session):
        await create_user(session, email="li@example.com", role="agent", locale="zh_CN")
        await signed_in(client, "li@example.com")
        page = await client.get("/inbox", headers={"Accept-Language": "en-US", "Accept": "text/html"})
        assert "收件箱" in page.text
        assert "退出登录" in page.text

    async def test_switching_locale_saves_it(self, client, session):
        await create_user(session, email="sam@example.com", role="agent")
        browser = await signed_in(client, "sam@example.com")
        await client.post(
            "/settings/locale", data={"locale": "zh_CN", "next": "/inbox", "csrf_token": browser.csrf}
        )
        assert (await client.get("/api/v1/me")).json()["locale"] == "zh_CN"
