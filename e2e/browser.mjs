// Headless Chromium through the authorization server's real pages.
//
//   node browser.mjs <issuer-url> [artifacts-dir]     (E2E_USER, E2E_PASSWORD: the demo user)
//
// Registers a client by DCR, opens the authorization URL, signs in, checks the consent page
// (client name, redirect host, scopes; screenshot `<artifacts-dir>/consent.png`, default
// `../target/e2e-artifacts`), approves → the browser lands on this script's loopback listener
// with code, state and iss → the code is exchanged and the token used. Then a second
// authorization that the user denies → `error=access_denied` with the same state.
// One `ok - ` / `not ok - ` line per check; exit code 1 when any failed.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { check, deadline, env, finish, step } from './lib/report.mjs';

deadline(150);
if (!process.argv[2]) {
  console.log('usage: node browser.mjs <issuer-url> [artifacts-dir]');
  process.exit(2);
}
const ISSUER = process.argv[2].replace(/\/$/, '');
const ARTIFACTS = path.resolve(process.argv[3] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '../target/e2e-artifacts'));
const USERNAME = env('E2E_USER');
const PASSWORD = env('E2E_PASSWORD');
const RESOURCE = `${ISSUER}/mcp`;
const CLIENT_NAME = 'Chromium E2E Notebook';
const SCOPES = ['data:read', 'data:write'];
const CHROMIUM = '/usr/bin/chromium';

/** The client's loopback redirect listener: every callback it receives, in order. */
const callbacks = [];
const waiters = [];
const listener = createServer((request, response) => {
  const url = new URL(request.url, `http://${request.headers.host}`);
  if (url.pathname !== '/callback') {
    response.writeHead(404).end();
    return;
  }
  response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end('<h1>Back in the app</h1>');
  callbacks.push(url);
  waiters.splice(0).forEach((resolve) => resolve());
});
await new Promise((resolve) => listener.listen(0, '127.0.0.1', resolve));
const REDIRECT_HOST = `127.0.0.1:${listener.address().port}`;
const REDIRECT_URI = `http://${REDIRECT_HOST}/callback`;

/** Waits until the listener has received `count` callbacks. */
async function callback(count, seconds = 20) {
  const until = Date.now() + seconds * 1000;
  while (callbacks.length < count) {
    assert.ok(Date.now() < until, `no callback at ${REDIRECT_URI} within ${seconds}s`);
    await new Promise((resolve) => { waiters.push(resolve); setTimeout(resolve, 250); });
  }
  return callbacks[count - 1];
}

/** A PKCE pair and a state for one authorization request. */
function pkce() {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url'), state: randomBytes(16).toString('base64url') };
}

/** The authorization URL for the registered client. */
function authorizationUrl(metadata, clientId, { challenge, state }) {
  const url = new URL(metadata.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: 'code', client_id: clientId, redirect_uri: REDIRECT_URI, state,
    code_challenge: challenge, code_challenge_method: 'S256', scope: SCOPES.join(' '), resource: RESOURCE,
  }).toString();
  return url;
}

/** Signs in when the login page shows (it does not once the session cookie is set). */
async function signInIfAsked(page) {
  if ((await page.locator('input[type=password]').count()) === 0) return false;
  await page.fill('input[name=username]', USERNAME);
  await page.fill('input[name=password]', PASSWORD);
  await Promise.all([page.waitForURL((url) => !url.pathname.endsWith('/login')), page.click('form:has(input[type=password]) button[type=submit]')]);
  return true;
}

let browser;
try {
  const metadata = await step('AS metadata', async () => {
    const response = await fetch(`${ISSUER}/.well-known/oauth-authorization-server`);
    assert.equal(response.status, 200);
    const body = await response.json();
    assert.equal(body.issuer, ISSUER);
    assert.ok(body.registration_endpoint && body.authorization_endpoint && body.token_endpoint);
    return body;
  });

  const clientId = await step('Dynamic Client Registration of a public loopback client', async () => {
    const response = await fetch(metadata.registration_endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        client_name: CLIENT_NAME, redirect_uris: [REDIRECT_URI], token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], scope: SCOPES.join(' '),
      }),
    });
    const body = await response.json();
    assert.equal(response.status, 201, JSON.stringify(body));
    assert.ok(body.client_id);
    return body.client_id;
  });

  browser = await step('headless Chromium starts', () => chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  }));
  const context = await browser.newContext({ viewport: { width: 800, height: 1000 } });
  context.setDefaultTimeout(20_000);
  const page = await context.newPage();

  // ---- approve ------------------------------------------------------------------------------
  const approved = pkce();
  await step('the authorization URL shows the login page; signing in leads to consent', async () => {
    const response = await page.goto(authorizationUrl(metadata, clientId, approved).href);
    assert.equal(response?.status(), 200);
    assert.match(await page.locator('h1').innerText(), /sign in/i);
    assert.ok(await signInIfAsked(page), 'a login form');
    assert.match(new URL(page.url()).pathname, /\/oauth\/authorize\/consent$/);
  });

  await check('the consent page names the client and the redirect host, and lists the scopes', async () => {
    const text = await page.locator('main').innerText();
    assert.ok(text.includes(CLIENT_NAME), `client name in: ${text}`);
    assert.ok(text.includes(REDIRECT_HOST), `redirect host ${REDIRECT_HOST} in: ${text}`);
    const boxes = page.locator('input[type=checkbox][name=scope]');
    const values = await boxes.evaluateAll((inputs) => inputs.map((i) => [i.value, i.checked]));
    assert.deepEqual(values.sort(), SCOPES.map((s) => [s, true]));
  });

  await check(`screenshot of the consent page → ${path.join(ARTIFACTS, 'consent.png')}`, async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'consent.png'), fullPage: true });
  });

  const back = await step('approve → redirected to the loopback URI with code, state and iss', async () => {
    await page.click('button[name=decision][value=approve]');
    const url = await callback(1);
    const q = url.searchParams;
    assert.equal(q.get('error'), null, `error=${q.get('error')} ${q.get('error_description') ?? ''}`);
    assert.ok(q.get('code'), 'a code');
    assert.equal(q.get('state'), approved.state);
    assert.equal(q.get('iss'), ISSUER);
    await page.waitForURL((u) => u.href.startsWith(REDIRECT_URI));
    assert.match(await page.locator('h1').innerText(), /back in the app/i, 'the browser itself arrived');
    return q;
  });

  const tokens = await step('the code is exchanged at the token endpoint', async () => {
    const response = await fetch(metadata.token_endpoint, {
      method: 'POST',
      body: new URLSearchParams({
        grant_type: 'authorization_code', code: back.get('code'), redirect_uri: REDIRECT_URI,
        code_verifier: approved.verifier, client_id: clientId, resource: RESOURCE,
      }),
    });
    const body = await response.json();
    assert.equal(response.status, 200, JSON.stringify(body));
    assert.match(response.headers.get('cache-control') ?? '', /no-store/);
    assert.match(body.token_type ?? '', /^bearer$/i);
    assert.ok(body.access_token && body.refresh_token);
    assert.deepEqual((body.scope ?? '').split(' ').sort(), SCOPES);
    return body;
  });

  await check('the access token opens the MCP endpoint', async () => {
    const response = await fetch(RESOURCE, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokens.access_token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'browser-e2e', version: '0' } } }),
    });
    assert.equal(response.status, 200);
  });

  // ---- deny ---------------------------------------------------------------------------------
  const denied = pkce();
  await check('deny → redirected with error=access_denied and the same state, no code', async () => {
    await page.goto(authorizationUrl(metadata, clientId, denied).href);
    // Signed in already (session cookie): the consent page may come straight from /authorize.
    await signInIfAsked(page);
    assert.ok(await page.locator('main').innerText().then((t) => t.includes(CLIENT_NAME)), 'the consent page');
    await page.click('button[name=decision][value=deny]');
    const q = (await callback(2)).searchParams;
    assert.equal(q.get('error'), 'access_denied');
    assert.equal(q.get('state'), denied.state);
    assert.equal(q.get('code'), null);
    assert.equal(q.get('iss'), ISSUER, 'RFC 9207: iss on error responses too');
  });
} finally {
  await browser?.close().catch(() => {});
  listener.close();
}
finish();
