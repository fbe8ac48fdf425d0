"""The official Python MCP SDK as a client of the rbac example (run by tests/python_sdk.rs).

Usage: python_client.py MCP_URL

The credentials come from the environment, never from the command line (where `ps` shows
them): VIEWER_KEY, an API key with the viewer role, and EDITOR_JWT, a JWT whose `sub` is
EDITOR_SUBJECT and whose role is editor.

Two sessions, each as a real client would open one (the SDK negotiates the protocol version
itself; 2026-07-28 with this server):

- the viewer's API key in `X-API-Key`: `tools/list` shows only `read-data`; `read-data` of the
  seeded key `a` answers `welcome`; `delete-data` is refused with a JSON-RPC error whose
  `data.reason` is `missing_role`;
- the editor's JWT in `Authorization: Bearer`: `tools/list` shows `read-data` and `write-data`;
  a write comes back with the token's subject as the writer, and reads back.

Prints one line per check that passed; exits 1 with the reason at the first that did not.
"""

import asyncio
import os
import sys

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

# The version this SDK negotiates with a server that serves it: the test pins it, so that a
# silent fallback to the initialize handshake would be noticed.
EXPECTED_PROTOCOL = "2026-07-28"


class CheckFailed(Exception):
    """A check did not hold; the message says which and what was seen."""


def check(condition, what, seen):
    if not condition:
        raise CheckFailed(f"{what}: got {seen!r}")
    print(f"ok   {what}")


def text_of(result):
    """The text of a tool result's first content block."""
    return result.content[0].text if result.content else None


async def session(url, headers):
    """An SDK client whose every request carries `headers`."""
    http = create_mcp_http_client(headers=headers)
    return http, Client(streamable_http_client(url, http_client=http))


async def viewer_with_api_key(url, key):
    http, client = await session(url, {"X-API-Key": key})
    async with http, client:
        check(
            client.protocol_version == EXPECTED_PROTOCOL,
            f"API key session negotiated {EXPECTED_PROTOCOL}",
            client.protocol_version,
        )
        names = sorted(tool.name for tool in (await client.list_tools()).tools)
        check(names == ["read-data"], "a viewer's tools/list shows only read-data", names)
        read = await client.call_tool("read-data", {"key": "a"})
        check(
            not read.is_error and text_of(read) == "welcome",
            "a viewer reads the seeded key `a`",
            (read.is_error, text_of(read)),
        )
        try:
            denied = await client.call_tool("delete-data", {"key": "a"})
        except MCPError as error:
            reason = error.data.get("reason") if isinstance(error.data, dict) else None
            check(
                reason == "missing_role",
                f"a viewer's delete-data is refused (JSON-RPC {error.code}: {error.message})",
                error.data,
            )
        else:
            raise CheckFailed(f"a viewer's delete-data was not refused: {denied!r}")


async def editor_with_jwt(url, token, subject):
    http, client = await session(url, {"Authorization": f"Bearer {token}"})
    async with http, client:
        check(
            client.protocol_version == EXPECTED_PROTOCOL,
            f"JWT session negotiated {EXPECTED_PROTOCOL}",
            client.protocol_version,
        )
        names = sorted(tool.name for tool in (await client.list_tools()).tools)
        check(
            names == ["read-data", "write-data"],
            "an editor's tools/list shows read-data and write-data",
            names,
        )
        written = await client.call_tool(
            "write-data", {"key": "python", "value": "from the Python SDK"}
        )
        writer = (written.structured_content or {}).get("written_by")
        check(
            not written.is_error and writer == subject,
            "an editor's write-data succeeds, written by the token's subject",
            (written.is_error, written.structured_content),
        )
        read = await client.call_tool("read-data", {"key": "python"})
        check(
            text_of(read) == "from the Python SDK",
            "the written value reads back",
            text_of(read),
        )


def leaves(group):
    """The exceptions inside an exception group, however deeply nested."""
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            yield from leaves(error)
        else:
            yield error


async def main(url):
    await viewer_with_api_key(url, os.environ["VIEWER_KEY"])
    await editor_with_jwt(url, os.environ["EDITOR_JWT"], os.environ["EDITOR_SUBJECT"])


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    failures = []
    try:
        asyncio.run(main(sys.argv[1]))
    except* CheckFailed as group:
        # The SDK's task groups wrap what a session raises in exception groups.
        failures = [str(failed) for failed in leaves(group)]
    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    sys.exit(1 if failures else 0)
