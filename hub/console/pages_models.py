"""The models and providers page: each alias's deployments (provider, model, weight, pinned key) with the router's
circuit state per key (failures, cooling down and until when), and the providers by kind and key names. All of it
comes from `GET /api/v1/models`, which never shows a secret."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from hub.console.bridge import api_path
from hub.console.common import UI_PREFIX
from hub.console.web import Console, Page


async def models(console: Console, page: Page) -> Response:
    answer = await console.api(page, "GET", api_path("models"))
    if not answer.ok:
        return console.refused(page, answer)
    found = answer.json()
    return console.render(
        "models.html", page, aliases=found["data"], providers=found["providers"], others=found["other_hops"]
    )


def routes(console: Console) -> list[Route]:
    return [Route(f"{UI_PREFIX}/models", console.page(models), methods=["GET"])]
