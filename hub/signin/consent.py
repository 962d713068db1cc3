"""The consent page: after the identity provider said who the person is, and before the browser goes back to the
MCP client with a code, the hub shows which client asks (its name, or the URL of its metadata document), where it
will be sent (the redirect URI) and which tools it will reach (the person's grants over the live registry).

The page holds no secret in its URL: the consent in flight is named only by an HttpOnly cookie scoped to
`/signin`, and the form carries a CSRF token that is an HMAC of that cookie's value, so a form posted from
another site (without the cookie, or with another browser's) is refused. The page runs no script and loads
nothing (a strict Content-Security-Policy; its one style block is allowed by hash).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette.responses import HTMLResponse

from hub.governance.keys import VirtualKey

CONSENT_PATH = "/signin/consent"
CONSENT_COOKIE = "agenthub_signin_consent"
MAX_TOOLS_SHOWN = 200
"""Tools listed by name at most (a grant of `*` over a large registry says how many more)."""

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#1b1b1b}"
    "code{background:#f2f2f2;padding:0 .25rem;word-break:break-all}ul{max-height:20rem;overflow:auto}"
    "button{font-size:1rem;padding:.5rem 1.25rem;margin-right:.75rem}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()


def fingerprint(key: VirtualKey) -> str:
    """What a consent covers: the person's tools, models and team as their grants give them. A consent is
    remembered per person and client until this changes."""
    reach = {"tools": sorted(key.tools), "models": sorted(key.models), "team": key.team}
    return hashlib.sha256(json.dumps(reach, sort_keys=True).encode()).hexdigest()


def csrf_token(signing_key: bytes, consent_id: str) -> str:
    """The form's CSRF token: bound to the consent cookie of the browser that started the flow."""
    return hmac.new(signing_key, b"consent|" + consent_id.encode(), hashlib.sha256).hexdigest()


def csrf_valid(signing_key: bytes, consent_id: str, presented: str) -> bool:
    return bool(consent_id) and hmac.compare_digest(csrf_token(signing_key, consent_id), presented)


def client_label(client_id: str, client_name: str | None) -> tuple[str, str | None]:
    """The client's name as shown, and the URL of its metadata document when its id is one."""
    document = client_id if client_id.startswith("https://") else None
    return (client_name or document or client_id), document


def _form_target(redirect: str) -> str:
    """The CSP source that lets the form's response redirect to the client (browsers check `form-action` on the
    redirect after a POST too): the origin of an http(s) URI, the scheme of an app's own (`cursor:`)."""
    parts = urlsplit(redirect)
    if parts.scheme in ("http", "https"):
        return f"{parts.scheme}://{parts.netloc}"
    return f"{parts.scheme}:"


def consent_page(
    *,
    client_id: str,
    client_name: str | None,
    redirect_uri: str,
    person: str,
    tools: Sequence[str],
    csrf: str,
) -> HTMLResponse:
    """The page asking the person to approve or deny the client."""
    name, document = client_label(client_id, client_name)
    e = html.escape
    shown = list(tools[:MAX_TOOLS_SHOWN])
    items = "".join(f"<li><code>{e(tool)}</code></li>" for tool in shown)
    more = len(tools) - len(shown)
    if more > 0:
        items += f"<li>and {more} more</li>"
    if not tools:
        items = "<li>no tools at present (your grants match none the hub offers now)</li>"
    origin = f"<p>Its metadata document: <code>{e(document)}</code></p>" if document else ""
    body = (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Allow access to AgentHub?</title>"
        f"<meta name=viewport content='width=device-width'><style>{_STYLE}</style></head><body>"
        f"<h1>Allow <em>{e(name)}</em> to use AgentHub as you?</h1>"
        f"<p>Signed in as <strong>{e(person)}</strong>.</p>{origin}"
        f"<p>After you decide, your browser goes back to <code>{e(redirect_uri)}</code>.</p>"
        f"<p>It will reach these tools, with your budget and in your name:</p><ul>{items}</ul>"
        f"<form method=post action='{CONSENT_PATH}'><input type=hidden name=csrf value='{e(csrf)}'>"
        "<button type=submit name=decision value=approve>Approve</button>"
        "<button type=submit name=decision value=deny>Deny</button></form></body></html>"
    )
    policy = (
        f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; form-action 'self' {_form_target(redirect_uri)}; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    headers = {
        "Content-Security-Policy": policy,
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }
    return HTMLResponse(body, headers=headers)
