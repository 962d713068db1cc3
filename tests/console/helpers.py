"""Helpers for the console tests: signing in over plain HTTP, and reading a page's CSRF token."""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager

import httpx2

from tests.admin.conftest import ADMIN

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


async def sign_in(http: httpx2.AsyncClient, token: str = ADMIN) -> httpx2.Response:
    """Sign in through the form (reading its CSRF value first); returns the answer to the form's POST."""
    form = await http.get("/ui/signin")
    assert form.status_code == 200, form.text
    return await http.post("/ui/signin", data={"csrf": csrf_of(form.text), "token": token})


@asynccontextmanager
async def browser_like(base: str) -> AsyncGenerator[httpx2.AsyncClient]:
    """An HTTP client that keeps cookies and does not follow redirects (the tests look at each one)."""
    async with httpx2.AsyncClient(base_url=base, timeout=20, follow_redirects=False) as http:
        yield http
