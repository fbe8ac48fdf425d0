// The official TypeScript MCP SDK as an OAuth client of the `oauth` example.
//
//   node sdk-oauth.mjs <mcp-url> [--replicas]   (E2E_USER, E2E_PASSWORD: the demo user)
//
// 401 → protected-resource metadata → AS metadata → Dynamic Client Registration → authorize
// with PKCE + resource (login and consent pages driven with fetch) → token → tools → step-up
// on 403 insufficient_scope → refresh rotation and reuse detection → bearer refusals.
// One `ok - ` / `not ok - ` line per check; exit code 1 when any failed.
//
// --replicas: <mcp-url> is a proxy sending each request to another replica of the example
// (tests/oauth/postgres.rs). The tools' data lives in each replica's memory (the example's own
// state, not the gatekeeper's), so the tool checks read the key every replica starts with; and
// two more checks replay a consent decision and redeem a code twice, each second attempt
// reaching the other replica.

import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  UnauthorizedError,
  discoverAuthorizationServerMetadata,
  discoverOAuthProtectedResourceMetadata,
  refreshAuthorization,
} from '@modelcontextprotocol/sdk/client/auth.js';
import { check, deadline, env, finish, step } from './lib/report.mjs';
import { Browserless, authorizeWithoutBrowser, forms, pageText, scopeBoxes } from './lib/pages.mjs';

deadline(100);
if (!process.argv[2]) {
  console.log('usage: node sdk-oauth.mjs <mcp-url> [--replicas]');
  process.exit(2);
}
const MCP_URL = new URL(process.argv[2]);
/** Requests alternate between replicas, each with the tools' data in its own memory. */
const REPLICAS = process.argv.slice(3).includes('--replicas');
/** The key (and value) every instance of the example starts with. */
const WELCOME = ['a', 'welcome'];
const USERNAME = env('E2E_USER');
const PASSWORD = env('E2E_PASSWORD');
// A loopback redirect URI nobody listens on: the pages are driven with fetch, and the code is
// read from the Location header that points here.
const REDIRECT_URI = `http://127.0.0.1:${40000 + Math.floor(Math.random() * 20000)}/callback`;
const ALL_SCOPES = ['data:delete', 'data:read', 'data:write', 'users:manage'];

/** Every response the SDK's transport received, to see the 401 and 403 challenges it handled. */
const wire = [];
const recordingFetch = async (url, init) => {
  const response = await fetch(url, init);
  wire.push({ method: init?.method ?? 'GET', url: String(url), status: response.status, challenge: response.headers.get('www-authenticate') });
  return response;
};

/** An OAuthClientProvider that answers the authorization request itself, without a browser. */
class HeadlessProvider {
  #state = {};
  /** What the next consent should allow (null: whatever the page offers, all checked). */
  consentScopes = null;
  /** While true, `tokens()` hides the refresh token: see `stepUp` below. */
  hideRefreshToken = false;
  /** Every authorization request the SDK made, with what the pages showed and returned. */
  authorizations = [];
  session = new Browserless();

  get redirectUrl() { return REDIRECT_URI; }
  get clientMetadata() {
    return {
      client_name: 'mcp-gatekeeper e2e (TypeScript SDK)',
      redirect_uris: [REDIRECT_URI],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }
  state() { return (this.#state.state = randomUUID()); }
  clientInformation() { return this.#state.client; }
  saveClientInformation(client) { this.#state.client = client; }
  tokens() {
    const tokens = this.#state.tokens;
    if (tokens && this.hideRefreshToken) return { ...tokens, refresh_token: undefined };
    return tokens;
  }
  saveTokens(tokens) { this.#state.tokens = tokens; }
  saveCodeVerifier(verifier) { this.#state.verifier = verifier; }
  codeVerifier() { return this.#state.verifier; }
  invalidateCredentials(scope) {
    if (scope === 'all' || scope === 'tokens') delete this.#state.tokens;
    if (scope === 'all' || scope === 'client') delete this.#state.client;
    if (scope === 'all' || scope === 'verifier') delete this.#state.verifier;
  }

  /** Drives the login and consent pages, then checks the redirect back (code, state, iss). */
  async redirectToAuthorization(url) {
    const result = await authorizeWithoutBrowser(url, {
      redirectUri: REDIRECT_URI,
      username: USERNAME,
      password: PASSWORD,
      scopes: this.consentScopes,
      decision: 'approve',
      session: this.session,
    });
    const back = result.redirect.searchParams;
    this.authorizations.push({ request: url, ...result, code: back.get('code'), state: back.get('state'), iss: back.get('iss'), error: back.get('error') });
  }

  /** The last authorization: asserts it came back with a code for the state the SDK sent. */
  lastCode() {
    const last = this.authorizations.at(-1);
    assert.ok(last, 'the SDK never asked for an authorization');
    assert.equal(last.error, null, `the authorization came back with error=${last.error}`);
    assert.equal(last.state, this.#state.state, 'state in the redirect equals the state sent');
    assert.ok(last.code, 'a code in the redirect');
    return last.code;
  }
}

/** A raw MCP initialize, to look at the resource server's answers without the SDK. */
function rawInitialize(headers = {}, url = MCP_URL) {
  const body = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '0' } } };
  return fetch(url, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers } });
}

/** The scopes of a space-separated string, sorted. */
const scopeSet = (s) => (s ?? '').split(' ').filter(Boolean).sort();

/** Connects through the SDK: 401 → auth() → our provider → finishAuth(code) → reconnect. */
async function connect(provider) {
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const transport = new StreamableHTTPClientTransport(MCP_URL, { authProvider: provider, fetch: recordingFetch });
    const client = new Client({ name: 'mcp-gatekeeper-e2e', version: '0.0.1' });
    try {
      await client.connect(transport);
      return { client, transport };
    } catch (error) {
      if (!(error instanceof UnauthorizedError)) throw error;
      await transport.finishAuth(provider.lastCode());
    }
  }
  throw new Error('still unauthorized after 3 authorizations');
}

/**
 * Runs `fn`; on the SDK's UnauthorizedError (it re-authorized after a 403 insufficient_scope),
 * exchanges the new code and retries once.
 *
 * SDK 1.32 first tries its refresh token on a 403 insufficient_scope, and a refresh can never
 * widen the scope (RFC 6749 §6), so the retry gets the same 403 and the SDK gives up
 * (typescript-sdk issue #2255, fixed in the v2 SDK by forcing a new authorization when the
 * challenged scope exceeds the token's). The provider hides the refresh token meanwhile, so the
 * SDK goes straight to the authorization request, as the MCP step-up flow intends.
 */
async function stepUp(provider, conn, fn) {
  provider.hideRefreshToken = true;
  try {
    return await fn(conn.client);
  } catch (error) {
    if (!(error instanceof UnauthorizedError)) throw error;
    await conn.transport.finishAuth(provider.lastCode());
    return await fn(conn.client);
  } finally {
    provider.hideRefreshToken = false;
  }
}

/** The text of a tool result; fails on an error result. */
function resultText(result) {
  const text = (result.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('\n');
  assert.ok(!result.isError, `the tool answered an error: ${text}`);
  return text;
}

// ---- 1. the resource server, raw ----------------------------------------------------------
let challengedMetadataUrl;
await step('initialize without a token → 401 with a Bearer challenge naming resource_metadata', async () => {
  const response = await rawInitialize();
  assert.equal(response.status, 401);
  const challenge = response.headers.get('www-authenticate') ?? '';
  const m = /^Bearer\b.*\bresource_metadata="([^"]+)"/i.exec(challenge);
  assert.ok(m, `WWW-Authenticate: ${challenge}`);
  challengedMetadataUrl = m[1];
});

await check('bearer not-a-token → 401 with WWW-Authenticate: Bearer … resource_metadata=', async () => {
  const response = await rawInitialize({ authorization: 'Bearer not-a-token' });
  assert.equal(response.status, 401);
  const challenge = response.headers.get('www-authenticate') ?? '';
  assert.match(challenge, /^Bearer\b.*\bresource_metadata="[^"]+"/i, `WWW-Authenticate: ${challenge}`);
  assert.match(challenge, /\berror="invalid_token"/, `RFC 6750 §3.1 error code in: ${challenge}`);
});

const prm = await step('protected-resource metadata: resource is the MCP URL, one authorization server', async () => {
  const metadata = await discoverOAuthProtectedResourceMetadata(MCP_URL);
  assert.equal(metadata.resource, MCP_URL.href.replace(/\/$/, ''));
  assert.equal(challengedMetadataUrl, new URL('/.well-known/oauth-protected-resource/mcp', MCP_URL).href, 'the challenge names the path-inserted metadata URL');
  assert.ok(Array.isArray(metadata.authorization_servers) && metadata.authorization_servers.length > 0);
  assert.deepEqual(scopeSet((metadata.scopes_supported ?? []).join(' ')), ALL_SCOPES);
  return metadata;
});
const ISSUER = prm.authorization_servers[0];

const asMeta = await step('AS metadata: issuer equals the PRM authorization server, S256, DCR', async () => {
  const metadata = await discoverAuthorizationServerMetadata(ISSUER);
  assert.ok(metadata, `no metadata for ${ISSUER}`);
  assert.equal(metadata.issuer, ISSUER, 'RFC 8414 §3.3');
  assert.ok(metadata.code_challenge_methods_supported?.includes('S256'), 'S256 advertised');
  assert.ok(metadata.response_types_supported?.includes('code'));
  assert.ok(metadata.registration_endpoint, 'a registration endpoint');
  return metadata;
});

// ---- 2. the SDK's own flow, consenting to read and write only ----------------------------
const provider = new HeadlessProvider();
provider.consentScopes = ['data:read', 'data:write'];
const conn = await step('SDK connects: DCR, authorize with PKCE + resource, login, partial consent, token', async () => {
  const connection = await connect(provider);
  assert.ok(provider.clientInformation()?.client_id, 'registered by DCR');
  assert.equal(provider.authorizations.length, 1, 'one authorization');
  return connection;
});

await check('the authorization request carried PKCE S256, state and the resource', async () => {
  const q = provider.authorizations[0].request.searchParams;
  assert.equal(q.get('code_challenge_method'), 'S256');
  assert.match(q.get('code_challenge') ?? '', /^[A-Za-z0-9_-]{43}$/);
  assert.equal(q.get('resource'), prm.resource);
  assert.ok(q.get('state'));
  assert.equal(q.get('client_id'), provider.clientInformation().client_id);
});

await check('login page then consent page listing every requested scope', async () => {
  const first = provider.authorizations[0];
  assert.equal(first.login, 1, 'signed in once');
  assert.deepEqual([...(first.consentScopes ?? [])].sort(), scopeSet(first.request.searchParams.get('scope')));
  assert.ok(first.consentScopes.includes('data:delete'), 'more was offered than the user allowed');
});

await check('the redirect carries iss = the issuer (RFC 9207)', async () => {
  assert.equal(provider.authorizations[0].iss, ISSUER);
});

await check('the token holds only the consented scopes', async () => {
  assert.deepEqual(scopeSet(provider.tokens().scope), ['data:read', 'data:write']);
  assert.ok(provider.tokens().refresh_token, 'a refresh token');
});

await check('tools/list', async () => {
  const { tools } = await conn.client.listTools();
  const names = tools.map((t) => t.name);
  for (const name of ['read-data', 'write-data']) assert.ok(names.includes(name), `${name} in ${names}`);
  console.log(`# tools/list: ${names.join(', ')}`);
});

await check('tools/call write-data then read-data', async () => {
  resultText(await conn.client.callTool({ name: 'write-data', arguments: { key: 'e2e', value: 'written by the TypeScript SDK' } }));
  if (REPLICAS) {
    // The read may reach the other replica, which never saw the write.
    const text = resultText(await conn.client.callTool({ name: 'read-data', arguments: { key: WELCOME[0] } }));
    assert.equal(text, WELCOME[1]);
    return;
  }
  const text = resultText(await conn.client.callTool({ name: 'read-data', arguments: { key: 'e2e' } }));
  assert.match(text, /written by the TypeScript SDK/);
});

// ---- 3. step-up: delete-data needs data:delete, which the user did not grant -------------
provider.consentScopes = null;
const firstAccessToken = provider.tokens().access_token;
const before = wire.length;
await check('delete-data → 403 insufficient_scope → SDK re-authorizes → retry succeeds', async () => {
  const result = await stepUp(provider, conn, (client) => client.callTool({ name: 'delete-data', arguments: { key: 'e2e' } }));
  resultText(result);
  const forbidden = wire.slice(before).find((r) => r.status === 403);
  assert.ok(forbidden, `no 403 on the wire: ${JSON.stringify(wire.slice(before))}`);
  assert.match(forbidden.challenge ?? '', /^Bearer\b.*\berror="insufficient_scope"/i, `WWW-Authenticate: ${forbidden.challenge}`);
  assert.match(forbidden.challenge ?? '', /\bscope="[^"]*\bdata:delete\b/, 'the challenge names data:delete');
  assert.equal(provider.authorizations.length, 2, 'a second authorization');
  const second = provider.authorizations[1];
  assert.ok(scopeSet(second.request.searchParams.get('scope')).includes('data:delete'), 'the SDK asked for data:delete');
  assert.equal(second.login, 0, 'the session cookie spared a second login');
  console.log(`# step-up: challenge ${forbidden.challenge}; requested scope ${second.request.searchParams.get('scope')}; granted ${provider.tokens().scope}`);
  assert.ok(scopeSet(provider.tokens().scope).includes('data:delete'), `token scope: ${provider.tokens().scope}`);
});

await check(REPLICAS ? 'read-data with the first token (read + write)' : 'read-data with the first token (read + write): the key is gone', async () => {
  // The step-up token holds only what SDK 1.32 asked for, the challenged data:delete; the token
  // from the first authorization still reads. A plain bearer, no auth provider.
  const transport = new StreamableHTTPClientTransport(MCP_URL, { requestInit: { headers: { authorization: `Bearer ${firstAccessToken}` } } });
  const client = new Client({ name: 'mcp-gatekeeper-e2e-reader', version: '0.0.1' });
  await client.connect(transport);
  try {
    if (REPLICAS) {
      assert.equal(resultText(await client.callTool({ name: 'read-data', arguments: { key: WELCOME[0] } })), WELCOME[1]);
      return;
    }
    const result = await client.callTool({ name: 'read-data', arguments: { key: 'e2e' } });
    const text = (result.content ?? []).map((c) => c.text).join(' ');
    assert.ok(result.isError, `read-data still answers: ${text}`);
    assert.match(text, /no value stored/);
  } finally {
    await transport.close().catch(() => {});
  }
});

// ---- 4. bearer only in the header ---------------------------------------------------------
await check('a valid token in the query string → 401 (header works)', async () => {
  const token = provider.tokens().access_token;
  assert.equal((await rawInitialize({ authorization: `Bearer ${token}` })).status, 200, 'the same token in the header is accepted');
  const url = new URL(MCP_URL);
  url.searchParams.set('access_token', token);
  assert.equal((await rawInitialize({}, url)).status, 401);
});

// ---- 5. refresh rotation and reuse detection ---------------------------------------------
await check('refresh: rotation, reuse of the old token → invalid_grant, then the family is revoked', async () => {
  const options = { metadata: asMeta, clientInformation: provider.clientInformation(), resource: prm.resource };
  const rt1 = provider.tokens().refresh_token;
  assert.ok(rt1, 'a refresh token');
  const t2 = await refreshAuthorization(ISSUER, { ...options, refreshToken: rt1 });
  assert.ok(t2.access_token);
  assert.notEqual(t2.refresh_token, rt1, 'a new refresh token');
  assert.equal((await rawInitialize({ authorization: `Bearer ${t2.access_token}` })).status, 200, 'the refreshed access token works');
  // Using t2's refresh token shows the client received it, so rt1 can no longer pass for a
  // retry of a lost answer (the server's grace period): it is reuse.
  const t3 = await refreshAuthorization(ISSUER, { ...options, refreshToken: t2.refresh_token });
  assert.ok(t3.refresh_token, 'the rotated token rotates');
  const invalidGrant = (e) => e?.errorCode === 'invalid_grant' || /invalid_grant/.test(String(e));
  await assert.rejects(refreshAuthorization(ISSUER, { ...options, refreshToken: rt1 }), invalidGrant, 'reuse of the rotated token');
  await assert.rejects(refreshAuthorization(ISSUER, { ...options, refreshToken: t3.refresh_token }), invalidGrant, 'the family is revoked');
});

// ---- 6. replicas: what must be single-use stays single-use across them ---------------------
// Each second attempt is the request right after the first, so the proxy sends it to the other
// replica (the Rust test checks that in its log).
if (REPLICAS) {
  const options = { metadata: asMeta, clientInformation: provider.clientInformation(), resource: prm.resource };
  const verifier = randomBytes(32).toString('base64url');
  let code;
  await check('replicas: a consent decision replayed on the other replica gives no second code', async () => {
    const state = randomUUID();
    const url = new URL(asMeta.authorization_endpoint);
    const params = {
      response_type: 'code',
      client_id: options.clientInformation.client_id,
      redirect_uri: REDIRECT_URI,
      scope: 'data:read',
      state,
      code_challenge: createHash('sha256').update(verifier).digest('base64url'),
      code_challenge_method: 'S256',
      resource: prm.resource,
    };
    for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
    // Still signed in (the session cookie of the SDK flow): the consent page at once.
    const page = await provider.session.fetch(url);
    const html = await page.text();
    assert.equal(page.status, 200, pageText(html).slice(0, 400));
    const consent = forms(html, url).find((f) => f.controls.some((c) => c.name === 'decision'));
    assert.ok(consent, `not the consent page: ${pageText(html).slice(0, 400)}`);
    const fields = [
      ...consent.controls.filter((c) => c.tag === 'input' && c.type === 'hidden' && c.name).map((c) => [c.name, c.value ?? '']),
      ...scopeBoxes(consent).filter((b) => b.checked).map((b) => ['scope', b.value]),
      ['decision', 'approve'],
    ];
    const first = await provider.session.post(consent.action, fields);
    const replayed = await provider.session.post(consent.action, fields);
    assert.equal(first.status, 303, 'the decision is taken');
    const back = new URL(first.headers.get('location'));
    assert.equal(back.searchParams.get('state'), state);
    code = back.searchParams.get('code');
    assert.ok(code, `a code: ${back}`);
    const text = pageText(await replayed.text());
    assert.equal(replayed.status, 400, `the replay: ${text.slice(0, 400)}`);
    assert.equal(replayed.headers.get('location'), null, 'no redirect, so no second code');
    assert.match(text, /expired|already answered/i);
  });

  await check('replicas: a code redeemed again on the other replica → invalid_grant, and the grant is revoked', async () => {
    assert.ok(code, 'a code from the previous check');
    const exchange = () => fetch(asMeta.token_endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        code,
        redirect_uri: REDIRECT_URI,
        code_verifier: verifier,
        client_id: options.clientInformation.client_id,
        resource: prm.resource,
      }),
    });
    const redeemed = await exchange();
    const again = await exchange();
    const tokens = await redeemed.json();
    assert.equal(redeemed.status, 200, JSON.stringify(tokens));
    const refused = await again.json();
    assert.equal(again.status, 400, JSON.stringify(refused));
    assert.equal(refused.error, 'invalid_grant');
    // The replay ended everything issued from the code, whichever replica is asked.
    for (let i = 0; i < 2; i += 1) {
      assert.equal((await rawInitialize({ authorization: `Bearer ${tokens.access_token}` })).status, 401, 'the access token is revoked');
    }
    const invalidGrant = (e) => e?.errorCode === 'invalid_grant' || /invalid_grant/.test(String(e));
    await assert.rejects(refreshAuthorization(ISSUER, { ...options, refreshToken: tokens.refresh_token }), invalidGrant, 'the refresh token is revoked');
  });
}

await conn.transport.close().catch(() => {});
finish();
