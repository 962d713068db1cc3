"""`GET /metrics`: the Prometheus scrape endpoint (`hub.telemetry.metrics` renders what it returns).

Outside the virtual-key pipeline: a scrape is not a governed call (it reaches no upstream and spends nothing), and
counting it would make every scrape change what it reports. What guards it instead is `[metrics] token`: when
set, a scrape without `Authorization: Bearer <token>` is refused with 401 (compared in constant time), and with no
token the endpoint answers whoever reaches the hub, as Prometheus exporters do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from hub.doors.web import error_response
from hub.errors import NotFound, Unauthenticated
from hub.governance.keys import bearer_token, constant_time_equal

if TYPE_CHECKING:
    from hub.telemetry.metrics import HubMetrics

METRICS_PATH = "/metrics"


def metrics_endpoint(
    token: str | None, metrics: Callable[[], HubMetrics | None]
) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint for `METRICS_PATH`: the exposition of `metrics()` (None when the running hub keeps none),
    behind `token` when one is set."""

    async def scrape(request: Request) -> Response:
        if token is not None:
            presented = bearer_token(request.headers.get("authorization"))
            if presented is None or not constant_time_equal(token, presented):
                return error_response(Unauthenticated("scraping /metrics needs the metrics token as a bearer token"))
        current = metrics()
        if current is None:
            return error_response(NotFound("this hub keeps no metrics ([metrics] enabled = false)"))
        body, content_type = current.render(request.headers.get("accept"))
        return Response(body, headers={"content-type": content_type})

    return scrape
