"""HEAD on every GET route (SPEC section 7): CDNs and link checkers ask with it.

FastAPI routes answer only the methods they name, so HEAD would be 405 everywhere. Rather
than name HEAD on each route (and again on every route added later), this middleware
runs a HEAD request as the GET it stands for and sends the same status and headers with
no body. A route that streams stored bytes can look at ``is_head`` and skip reading
them. A path with no GET route still answers 405 with its ``Allow`` header.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_HEAD_KEY = "imgpipe.head"


def is_head(scope: Scope) -> bool:
    """Whether this request arrived as HEAD (its scope now says GET)."""
    return bool(scope.get(_HEAD_KEY))


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        # A copy: the server keeps its own scope, which must still say HEAD so that it
        # sends no body and accepts the GET's Content-Length as the would-be length.
        as_get = {**scope, "method": "GET", _HEAD_KEY: True}
        finished = False

        async def headers_only(message: Message) -> None:
            nonlocal finished
            if message["type"] != "http.response.body":
                await send(message)
            elif not message.get("more_body", False) and not finished:
                finished = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        try:
            await self.app(as_get, receive, headers_only)
        finally:
            if "route" in as_get:  # for the request timing outside, which labels by route
                scope["route"] = as_get["route"]
