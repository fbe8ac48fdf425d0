// The official TypeScript MCP SDK (the pinned @modelcontextprotocol/sdk) as a client of a server
// that offers no OAuth, configured the two ways applications do: a static header only, and a
// static header next to an OAuth provider (what OAuth-capable hosts pass to the transport).
// Either way a wrong credential must fail the connection with the server's reason, and the
// second must not start OAuth discovery (which, on a 401, ends in "Dynamic Client Registration
// rejected" and loses the reason). An `Authorization: Basic` header is "no credential" (401),
// not a malformed request.
//
//   node interop-sdk.mjs <mcp-url> <reason-it-must-show>      (INTEROP_WRONG_HEADER: `Name: value`)
//
// One `ok - ` / `not ok - ` line per check; exit code 1 when any failed.

import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { check, deadline, env, finish } from './lib/report.mjs';

deadline(60);
const [url, reason] = process.argv.slice(2);
if (!reason) {
  console.log('usage: node interop-sdk.mjs <mcp-url> <reason>');
  process.exit(2);
}
const [name, ...rest] = env('INTEROP_WRONG_HEADER').split(':');
const wrongHeader = { [name.trim()]: rest.join(':').trim() };

/** Every URL the transport fetched, to see whether it went looking for OAuth metadata. */
const fetched = [];
const recordingFetch = (input, init) => {
  fetched.push(`${init?.method ?? 'GET'} ${new URL(String(input)).pathname}`);
  return fetch(input, init);
};

/**
 * An OAuth client provider as an application supplies it; nothing in these checks may get as
 * far as asking the user to sign in.
 */
class ApplicationProvider {
  redirects = 0;
  #client;
  #verifier;
  get redirectUrl() {
    return 'http://127.0.0.1:9/callback';
  }
  get clientMetadata() {
    return { client_name: 'interop', redirect_uris: [this.redirectUrl] };
  }
  clientInformation() {
    return this.#client;
  }
  saveClientInformation(info) {
    this.#client = info;
  }
  tokens() {
    return undefined;
  }
  saveTokens() {}
  redirectToAuthorization() {
    this.redirects += 1;
  }
  saveCodeVerifier(verifier) {
    this.#verifier = verifier;
  }
  codeVerifier() {
    return this.#verifier;
  }
}

/** Connects with `options`; returns the error the connection failed with. */
async function failedConnection(options) {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    fetch: recordingFetch,
    ...options,
  });
  const client = new Client({ name: 'interop', version: '0.0.0' });
  try {
    await client.connect(transport);
  } catch (error) {
    return error;
  } finally {
    await transport.close().catch(() => {});
  }
  assert.fail('the connection succeeded');
}

await check('a static header: the connection fails with the server\'s reason', async () => {
  const error = await failedConnection({ requestInit: { headers: wrongHeader } });
  console.log(`# the SDK's error: code ${error.code}: ${error.message}`);
  assert.ok(error.message.includes(reason), error.message);
});

await check('a static header next to an OAuth provider: the reason, and no OAuth', async () => {
  fetched.length = 0;
  const provider = new ApplicationProvider();
  const error = await failedConnection({
    requestInit: { headers: wrongHeader },
    authProvider: provider,
  });
  console.log(`# the SDK's error: ${error.constructor.name}: ${error.message}`);
  assert.ok(error.message.includes(reason), error.message);
  assert.equal(provider.redirects, 0);
  assert.deepEqual(
    fetched.filter((f) => f.includes('/.well-known/') || f.includes('register')),
    [],
    `fetched ${fetched}`,
  );
});

await check('Authorization: Basic is no credential: 401, not 400 invalid_request', async () => {
  const error = await failedConnection({
    requestInit: { headers: { Authorization: 'Basic YWxhZGRpbjpvcGVuc2VzYW1l' } },
  });
  console.log(`# the SDK's error: code ${error.code}: ${error.message}`);
  assert.equal(error.code, 401, error.message);
  assert.ok(error.message.includes('Unsupported authorization scheme'), error.message);
});
finish();
