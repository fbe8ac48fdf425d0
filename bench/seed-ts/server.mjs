// The seed's TypeScript MCP server, as the benchmark's reference point: Express +
// @modelcontextprotocol/sdk v1, an X-API-Key middleware checking a key list from MCP_API_KEYS
// (comma-separated), stateless Streamable HTTP with JSON responses (a new server and transport
// per request, as the SDK's stateless example does) and one trivial tool, `echo`.
//
//   MCP_API_KEYS=key1,key2 PORT=8805 node server.mjs

import express from "express";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { z } from "zod";

const keys = new Set(
  (process.env.MCP_API_KEYS ?? "")
    .split(",")
    .map((k) => k.trim())
    .filter(Boolean),
);
if (keys.size === 0) {
  console.error("MCP_API_KEYS is empty: every request would be refused");
  process.exit(2);
}
const host = process.env.HOST ?? "127.0.0.1";
const port = Number(process.env.PORT ?? 8805);

function buildServer() {
  const server = new McpServer({ name: "seed-ts", version: "0.1.0" });
  server.registerTool(
    "echo",
    {
      description: "Echo the text back.",
      inputSchema: { text: z.string().describe("The text to echo.") },
    },
    async ({ text }) => ({ content: [{ type: "text", text }] }),
  );
  return server;
}

const app = express();
app.use(express.json());

// API-key authentication.
app.use("/mcp", (req, res, next) => {
  const key = req.get("x-api-key");
  if (!key || !keys.has(key)) {
    res.status(401).json({ error: "unauthorized" });
    return;
  }
  next();
});

app.post("/mcp", async (req, res) => {
  const server = buildServer();
  const transport = new StreamableHTTPServerTransport({
    sessionIdGenerator: undefined,
    enableJsonResponse: true,
  });
  res.on("close", () => {
    transport.close();
    server.close();
  });
  try {
    await server.connect(transport);
    await transport.handleRequest(req, res, req.body);
  } catch (error) {
    console.error("error handling MCP request:", error);
    if (!res.headersSent) {
      res.status(500).json({
        jsonrpc: "2.0",
        error: { code: -32603, message: "Internal server error" },
        id: null,
      });
    }
  }
});

const methodNotAllowed = (_req, res) =>
  res.status(405).json({
    jsonrpc: "2.0",
    error: { code: -32000, message: "Method not allowed." },
    id: null,
  });
app.get("/mcp", methodNotAllowed);
app.delete("/mcp", methodNotAllowed);

const listener = app.listen(port, host, (error) => {
  if (error) {
    console.error(error);
    process.exit(1);
  }
  console.error(`seed-ts listening on http://${host}:${port}/mcp`);
});
process.on("SIGTERM", () => listener.close(() => process.exit(0)));
process.on("SIGINT", () => listener.close(() => process.exit(0)));
