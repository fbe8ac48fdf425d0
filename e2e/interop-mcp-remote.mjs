// mcp-remote (the pinned package; the stdio bridge Claude Desktop configurations use) with a
// fixed credential header, driven over stdio as a desktop client drives it:
//
//   node interop-mcp-remote.mjs <mcp-url> refused <reason>
//       a wrong credential: mcp-remote must report the server's reason (and exit, or answer
//       `initialize` with an error) without starting an OAuth sign-in and waiting for a browser;
//   node interop-mcp-remote.mjs <mcp-url> scope <reason> <tool> <arguments-json>
//       a right credential lacking the tool's scope: the call must be answered with an error
//       carrying the reason, not left waiting for a browser sign-in that a fixed header could
//       never use.
//
// INTEROP_HEADER is the header line (`X-API-Key: ...`); HOME should be a fresh directory
// (mcp-remote keeps tokens and its debug log under ~/.mcp-auth). One `ok - ` / `not ok - ` line
// per check; exit code 1 when any failed.

import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { check, deadline, env, finish } from './lib/report.mjs';
import { answer, kill, startNode, tail, within } from './lib/child.mjs';

deadline(100);
const [url, mode, reason, tool, args] = process.argv.slice(2);
if (!reason || !['refused', 'scope'].includes(mode) || (mode === 'scope' && !args)) {
  console.log('usage: node interop-mcp-remote.mjs <mcp-url> refused|scope <reason> [tool args]');
  process.exit(2);
}
const PROXY = fileURLToPath(new URL('./node_modules/mcp-remote/dist/proxy.js', import.meta.url));
/** What mcp-remote logs when it starts an OAuth sign-in. */
const SIGN_IN = /Please authorize|OAuth callback server running|Dynamic Client Registration/;

const bridge = startNode(PROXY, [url, '--header', env('INTEROP_HEADER')], { stdin: 'pipe' });
bridge.child.stdin.on('error', () => {}); // it may exit before reading what we send
const send = (message) => bridge.child.stdin.write(`${JSON.stringify({ jsonrpc: '2.0', ...message })}\n`);
send({
  id: 1,
  method: 'initialize',
  params: {
    protocolVersion: '2025-06-18',
    capabilities: {},
    clientInfo: { name: 'interop', version: '0.0.0' },
  },
});

/** What mcp-remote told its client and its log, for the report and the checks. */
const shown = () => `${bridge.stdout}\n${bridge.stderr}`;

if (mode === 'refused') {
  const started = Date.now();
  const initialized = await answer(bridge, 1, 15000);
  const ended = await within(2000, bridge.exited);
  console.log(
    `# after ${Date.now() - started} ms: ${ended ? `exited ${ended.code}` : 'still running'}, ` +
      `answer to initialize: ${JSON.stringify(initialized ?? null)}`,
  );
  const errors = bridge.stderr.split('\n').filter((line) => /Fatal error|Connection error/.test(line));
  console.log(errors.join('\n').replace(/^/gm, '#   '));
  await check('a wrong credential: mcp-remote gives up or answers, without waiting', () => {
    assert.ok(ended || initialized, 'neither exited nor answered within 15 s');
    if (!initialized) assert.notEqual(ended.code, 0);
    if (initialized) assert.ok(initialized.error, JSON.stringify(initialized));
  });
  await check(`a wrong credential: mcp-remote reports the server's reason (${reason})`, () => {
    assert.ok(shown().includes(reason), 'the reason is not in what it wrote');
  });
  await check('a wrong credential: mcp-remote starts no OAuth sign-in', () => {
    assert.doesNotMatch(shown(), SIGN_IN);
  });
} else {
  const initialized = await answer(bridge, 1, 15000);
  await check('the right credential: initialize succeeds through mcp-remote', () => {
    assert.ok(initialized?.result, JSON.stringify(initialized ?? tail(bridge.stderr)));
  });
  send({ method: 'notifications/initialized' });
  send({ id: 2, method: 'tools/call', params: { name: tool, arguments: JSON.parse(args) } });
  const started = Date.now();
  const called = await answer(bridge, 2, 15000);
  console.log(`# after ${Date.now() - started} ms the call was answered: ${JSON.stringify(called ?? null)}`);
  await check(`a call lacking a scope is answered with an error, without waiting (${tool})`, () => {
    assert.ok(called, 'no answer within 15 s');
    assert.ok(called.error || called.result?.isError, JSON.stringify(called));
  });
  await check(`the error carries the server's reason (${reason})`, () => {
    assert.ok(JSON.stringify(called ?? {}).includes(reason), JSON.stringify(called));
  });
  await check('mcp-remote starts no OAuth sign-in a fixed header could never use', () => {
    assert.doesNotMatch(shown(), SIGN_IN);
  });
}
bridge.child.stdin.end();
if (!(await within(3000, bridge.exited))) kill(bridge);
finish();
