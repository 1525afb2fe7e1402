"""The request body's size limit, checked as the bytes arrive (ASGI middleware).

A body whose ``Content-Length`` is over the limit is answered 413 before a byte of it is read;
a chunked body is counted as it is received, and the request fails (413) as soon as it passes
the limit. JSON bodies and multipart uploads have separate limits.
"""
from __future__ import annotations

import json

__all__ = ["BodyTooLarge", "BodyLimitMiddleware"]


class BodyTooLarge(Exception):
    """Raised while a body is read, once it has passed its limit (the app answers 413)."""

    def __init__(self, limit: int, flag: str) -> None:
        super().__init__(f"the request body is larger than the {limit:,} bytes allowed ({flag})")
        self.limit, self.flag = limit, flag


class BodyLimitMiddleware:
    """Refuse request bodies over ``json_limit`` bytes (``upload_limit`` for multipart/form-data)."""

    def __init__(self, app, json_limit: int, upload_limit: int) -> None:
        self.app, self.json_limit, self.upload_limit = app, json_limit, upload_limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        multipart = headers.get(b"content-type", b"").lower().startswith(b"multipart/form-data")
        limit, flag = (self.upload_limit, "--max-upload-bytes") if multipart else (self.json_limit, "--max-body-bytes")
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _send_413(send, BodyTooLarge(limit, flag))
            return
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit, flag)
            return message

        await self.app(scope, limited_receive, send)


async def _send_413(send, error: BodyTooLarge) -> None:
    body = json.dumps({"error": str(error), "field": "body"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
