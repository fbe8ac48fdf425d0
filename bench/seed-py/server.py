"""The seed's Python MCP server, as the benchmark's reference point.

FastMCP (the official `mcp` SDK, v1 line) with an API-key middleware checking `X-API-Key`
against MCP_API_KEYS (comma-separated), stateless Streamable HTTP with JSON responses and one
trivial tool, `echo`; served by uvicorn (one process, uvloop + httptools, no access log).

    MCP_API_KEYS=key1,key2 PORT=8806 python server.py
"""

import os
import sys

import uvicorn
from mcp.server.fastmcp import FastMCP
from starlette.middleware import Middleware
from starlette.responses import JSONResponse

HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "8806"))
KEYS = frozenset(k.strip() for k in os.environ.get("MCP_API_KEYS", "").split(",") if k.strip())

mcp = FastMCP(
    "seed-py",
    host=HOST,
    port=PORT,
    stateless_http=True,
    json_response=True,
    log_level="WARNING",
)


@mcp.tool()
def echo(text: str) -> str:
    """Echo the text back.

    Args:
        text: The text to echo.
    """
    return text


class ApiKeyMiddleware:
    """Pure ASGI middleware: refuse HTTP requests without a known `X-API-Key` (401)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            key = None
            for name, value in scope["headers"]:
                if name == b"x-api-key":
                    key = value.decode("latin-1")
                    break
            if key not in KEYS:
                response = JSONResponse({"error": "unauthorized"}, status_code=401)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def main() -> None:
    if not KEYS:
        print("MCP_API_KEYS is empty: every request would be refused", file=sys.stderr)
        sys.exit(2)
    app = mcp.streamable_http_app()
    app.user_middleware.insert(0, Middleware(ApiKeyMiddleware))
    print(f"seed-py listening on http://{HOST}:{PORT}/mcp", file=sys.stderr)
    uvicorn.run(
        app,
        host=HOST,
        port=PORT,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
