// MCP Inspector's CLI (the pinned @modelcontextprotocol/inspector) against a server that offers
// no OAuth: a wrong credential must end the CLI quickly with the server's reason, not with the
// OAuth flow it starts on a 401 ("Interactive OAuth requires a TTY", or, with a terminal,
// "Dynamic Client Registration rejected (HTTP 404)"); the right one lists the tools.
//
//   node interop-inspector.mjs <mcp-url> <tool-it-lists> <reason-it-must-show>
//
// The credentials come from the environment: INTEROP_GOOD_HEADER and INTEROP_WRONG_HEADER, each
// a whole header line (`X-API-Key: ...`). The CLI runs without a terminal and with
// MCP_AUTO_OPEN_ENABLED=false, as in CI; HOME should be a fresh directory (it keeps state there).
// One `ok - ` / `not ok - ` line per check; exit code 1 when any failed.

import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { check, deadline, env, finish } from './lib/report.mjs';
import { runNode, tail } from './lib/child.mjs';

deadline(100);
const [url, tool, reason] = process.argv.slice(2);
if (!reason) {
  console.log('usage: node interop-inspector.mjs <mcp-url> <tool> <reason>');
  process.exit(2);
}
const INSPECTOR = fileURLToPath(new URL('./node_modules/.bin/mcp-inspector', import.meta.url));
/** What a 401 makes this CLI print instead of the server's reason. */
const OAUTH_DETOUR = /Interactive OAuth|Dynamic Client Registration|authorization_code/;

/** Runs the CLI's `tools/list` with one header, bounded by `ms`. */
function toolsList(header, ms) {
  const args = ['--cli', url, '--transport', 'http', '--header', header, '--method', 'tools/list'];
  const quiet = { MCP_AUTO_OPEN_ENABLED: 'false', MCP_INSPECTOR_SECRET_STORE: 'memory' };
  return runNode(INSPECTOR, args, { env: quiet }, ms);
}

const wrong = await toolsList(env('INTEROP_WRONG_HEADER'), 20000);
const shown = `${wrong.stdout}\n${wrong.stderr}`;
console.log(`# a wrong credential: exit ${wrong.code} after ${wrong.ms} ms; the CLI printed:`);
console.log(tail(shown.replace(/^\[mcp-inspector\].*$/gm, ''), 5).replace(/^/gm, '#   '));
await check('a wrong credential: the CLI exits with an error, without waiting', () => {
  assert.equal(wrong.timedOut, false, 'still running after 20 s');
  assert.notEqual(wrong.code, 0);
  assert.ok(wrong.ms < 10000, `took ${wrong.ms} ms`);
});
await check(`a wrong credential: the CLI shows the server's reason (${reason})`, () => {
  assert.ok(shown.includes(reason), 'the reason is not in its output');
});
await check('a wrong credential: the CLI starts no OAuth flow', () => {
  assert.doesNotMatch(shown, OAUTH_DETOUR);
});

const good = await toolsList(env('INTEROP_GOOD_HEADER'), 30000);
await check(`the right credential: the CLI lists the tools (${tool})`, () => {
  assert.equal(good.code, 0, `exit ${good.code}:\n${tail(good.stderr)}`);
  const names = JSON.parse(good.stdout).tools.map((t) => t.name);
  assert.ok(names.includes(tool), `listed ${names}`);
});
finish();
