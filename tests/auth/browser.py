"""A scripted browser for authorization flows: one person, one cookie jar, signed in at the test authorization
server (it approves at once as the user the `X-Test-User` header names).

It reads pages the way a person would act on them: a page with a form is the hub's confirmation page, and
`follow` presses its button; redirects are followed one at a time so a test can stop at any hop.
"""

from __future__ import annotations

from collections.abc import Callable
from html.parser import HTMLParser
from types import TracebackType
from typing import Self

import httpx2

_MAX_HOPS = 10


class FormReader(HTMLParser):
    """The first POST form of a page: its action and its fields (hidden inputs), and the label of its button."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.found = False
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self.button = ""
        self._in_form = self._in_button = False
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form" and not self.found and (values.get("method") or "").lower() == "post":
            self.found = self._in_form = True
            self.action = values.get("action")
        elif tag == "input" and self._in_form and values.get("name"):
            self.fields[str(values["name"])] = values.get("value") or ""
        elif tag == "button" and self._in_form:
            self._in_button = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False
        elif tag == "button":
            self._in_button = False

    def handle_data(self, data: str) -> None:
        if self._in_button:
            self.button += data


class Browser:
    """One person's browser; use it as an async context manager."""

    def __init__(self, user: str) -> None:
        self.user = user
        self.http = httpx2.AsyncClient(follow_redirects=False, timeout=20, headers={"X-Test-User": user})

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.http.aclose()

    async def open(self, url: str | httpx2.URL) -> httpx2.Response:
        """GET one URL (no redirect followed)."""
        return await self.http.get(url)

    async def submit(self, page: httpx2.Response, **fields: str | None) -> httpx2.Response:
        """Press the button of the page's form; `fields` replace its values (None leaves a field out)."""
        form = FormReader(page.text)
        assert form.found, page.text
        data = {k: v for k, v in {**form.fields, **fields}.items() if v is not None}
        return await self.http.post(page.url.join(form.action or ""), data=data)

    async def follow(
        self, response: httpx2.Response, *, stop: Callable[[httpx2.URL], bool] | None = None
    ) -> httpx2.Response:
        """Follow redirects and press confirmation buttons until a page without a form, or until the next hop
        is a URL `stop` accepts (that redirect is returned, not followed)."""
        for _ in range(_MAX_HOPS):
            if response.status_code in (301, 302, 303, 307, 308):
                target = response.url.join(response.headers["location"])
                if stop is not None and stop(target):
                    return response
                response = await self.open(target)
            elif response.status_code == 200 and FormReader(response.text).found:
                response = await self.submit(response)
            else:
                return response
        raise AssertionError("too many hops")

    async def authorize(self, url: str) -> httpx2.Response:
        """Open an authorization link and go through to the end: the hub's last page."""
        return await self.follow(await self.open(url))

    async def until(self, url: str, prefix: str) -> httpx2.URL:
        """Open an authorization link and go on until the browser is about to load a URL starting with `prefix`;
        return that URL."""
        stopped = await self.follow(await self.open(url), stop=lambda u: str(u).startswith(prefix))
        assert stopped.status_code in (302, 303), stopped.text
        return stopped.url.join(stopped.headers["location"])
