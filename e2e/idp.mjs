// A real OpenID Provider (the pinned oidc-provider) for the tests of the OpenID Connect
// resource-server authenticator (runtime/src/auth/oidc*): clients get access tokens with the
// client credentials grant, as JWTs for `--audience` (and `--other-audience`), opaque and
// introspectable for `--opaque-audience`. Everything is in memory; it listens on 127.0.0.1 over
// plain http.
//
//   node idp.mjs --audience URL [--other-audience URL] [--opaque-audience URL]
//                [--port N] [--path /realms/test] [--path-inserted-metadata]
//                [--key-file PATH [--new-key] [--alg RS256|PS256|ES256|EdDSA]] [--also-key-file PATH]
//                [--token-ttl SECONDS] [--jwks-delay-ms N] [--jwks-max-age SECONDS]
//
// Once listening it prints one line of JSON on stdout, {"issuer":...,"port":...,"kid":...},
// and nothing else there; logs go to stderr. Runs until SIGTERM or SIGINT.
//
// - Clients (client_credentials; secret `<id>-secret`, sent with Basic or in the form):
//   viewer, editor, admin, nobody, shortlived (its tokens live 2 s), and mcp-server, the resource
//   server's own client, which may introspect and revoke the tokens of every client (the others
//   only their own). Each client's tokens carry its `roles`, `realm_access.roles` and `groups`.
// - A request without `resource` is for `--audience`. Scopes of every audience:
//   data:read data:write data:delete users:manage (others asked for are left out of the token).
// - The key signing the tokens is the first of `--key-file` (a JWK set with private keys),
//   created there (with a random kid) when the file is missing or `--new-key` is given; without
//   the option, a key of this run only. The public keys of `--also-key-file` are published in
//   the JWKS next to it (rotation overlap), never used to sign.
// - `GET <issuer>/test/counters`: how many requests each endpoint received since the start.
// - `--path-inserted-metadata` (with `--path`) also serves the metadata at the RFC 8414
//   path-inserted addresses (/.well-known/oauth-authorization-server/realms/test, and the same
//   for openid-configuration); by default, as oidc-provider does, only <issuer>/.well-known/...

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

// oidc-provider prints its notices with console.info: stdout is for the one line of JSON.
console.info = console.error;
console.log = console.error;
const log = (line) => console.error(`idp: ${line}`);

const { values: options } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    path: { type: 'string', default: '' },
    'path-inserted-metadata': { type: 'boolean', default: false },
    'key-file': { type: 'string' },
    'new-key': { type: 'boolean', default: false },
    alg: { type: 'string', default: 'RS256' },
    'also-key-file': { type: 'string' },
    audience: { type: 'string' },
    'other-audience': { type: 'string' },
    'opaque-audience': { type: 'string' },
    'token-ttl': { type: 'string', default: '300' },
    'jwks-delay-ms': { type: 'string', default: '0' },
    'jwks-max-age': { type: 'string' },
  },
});

function fail(message) {
  console.error(`idp: ${message}`);
  process.exit(2);
}

/** A whole number option, or a clear failure. */
function number(name) {
  const value = Number(options[name]);
  if (!Number.isInteger(value) || value < 0) fail(`--${name} must be a whole number, not ${options[name]}`);
  return value;
}

if (!options.audience) fail('--audience URL is required');
const port = number('port');
const tokenTtl = number('token-ttl');
const jwksDelayMs = number('jwks-delay-ms');
const jwksMaxAge = options['jwks-max-age'] === undefined ? undefined : number('jwks-max-age');
// `/realms/test/` and `realms/test` both mean /realms/test; `/` means none.
const prefix = options.path ? `/${options.path.replace(/^\/+|\/+$/g, '')}`.replace(/^\/$/, '') : '';

const SCOPE = 'data:read data:write data:delete users:manage';
const SHORT_TTL = 2;

/** The claims each client's tokens carry (in the JWT, or in the introspection response). */
const CLAIMS = {
  viewer: { roles: ['viewer'], realm_access: { roles: ['mcp-viewer'] }, groups: ['readers'] },
  editor: { roles: ['editor'], realm_access: { roles: ['mcp-editor'] }, groups: ['writers'] },
  admin: { roles: ['admin'], realm_access: { roles: ['mcp-admin'] }, groups: ['admins'] },
  nobody: { roles: [] },
};
CLAIMS.shortlived = CLAIMS.viewer;
const RESOURCE_SERVER_CLIENT = 'mcp-server';

// The signing key: generated, or loaded from --key-file.

const KEY_TYPES = {
  RS256: () => generateKeyPairSync('rsa', { modulusLength: 2048 }),
  PS256: () => generateKeyPairSync('rsa', { modulusLength: 2048 }),
  ES256: () => generateKeyPairSync('ec', { namedCurve: 'P-256' }),
  EdDSA: () => generateKeyPairSync('ed25519'),
};

function newKey(alg) {
  const generate = KEY_TYPES[alg] ?? fail(`--alg must be one of ${Object.keys(KEY_TYPES).join(', ')}`);
  const { privateKey } = generate();
  return { ...privateKey.export({ format: 'jwk' }), kid: randomBytes(12).toString('base64url'), alg, use: 'sig' };
}

function readKeys(file) {
  let keys;
  try {
    ({ keys } = JSON.parse(readFileSync(file, 'utf8')));
  } catch (error) {
    fail(`cannot read the JWK set in ${file}: ${error.message}`);
  }
  if (!Array.isArray(keys) || keys.length === 0) fail(`${file} holds no JWK set with keys`);
  return keys;
}

let signingKey;
const keyFile = options['key-file'];
if (keyFile && existsSync(keyFile) && !options['new-key']) {
  [signingKey] = readKeys(keyFile);
  if (!signingKey.kid || !signingKey.alg) fail(`the first key of ${keyFile} has no kid or no alg`);
  log(`signing with ${signingKey.alg} key ${signingKey.kid} from ${keyFile}`);
} else {
  signingKey = newKey(options.alg);
  if (keyFile) writeFileSync(keyFile, `${JSON.stringify({ keys: [signingKey] }, null, 2)}\n`, { mode: 0o600 });
  log(`signing with new ${signingKey.alg} key ${signingKey.kid}${keyFile ? `, written to ${keyFile}` : ''}`);
}

/** The public parts of the keys of --also-key-file, added to the JWKS as they are. */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];
const publishedToo = options['also-key-file']
  ? readKeys(options['also-key-file'])
    .filter((key) => key.kid !== signingKey.kid)
    .map((key) => Object.fromEntries(Object.entries(key).filter(([name]) => !PRIVATE_MEMBERS.includes(name))))
  : [];
if (publishedToo.length) log(`publishing too: ${publishedToo.map((key) => key.kid).join(', ')}`);

// Resource servers: their access token format, by resource indicator (= the tokens' `aud`).

const resources = new Map();
resources.set(options.audience, 'jwt');
if (options['other-audience']) resources.set(options['other-audience'], 'jwt');
if (options['opaque-audience']) resources.set(options['opaque-audience'], 'opaque');

// The request counters, by kind of request.

const counters = {
  discovery: 0, oauth_metadata: 0, jwks: 0, token: 0, introspection: 0, revocation: 0,
};
const ENDPOINTS = {
  [`${prefix}/jwks`]: 'jwks',
  [`${prefix}/token`]: 'token',
  [`${prefix}/token/introspection`]: 'introspection',
  [`${prefix}/token/revocation`]: 'revocation',
};
function count(pathname) {
  let kind = ENDPOINTS[pathname];
  if (pathname.includes('/.well-known/openid-configuration')) kind = 'discovery';
  if (pathname.includes('/.well-known/oauth-authorization-server')) kind = 'oauth_metadata';
  if (kind) counters[kind] += 1;
}

// The port is known once listening, and the issuer (which holds it) is needed to configure the
// provider: listen first, answer requests once the provider is there (before that line is
// printed, nobody knows the port).

const server = createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, '127.0.0.1', resolve);
}).catch((error) => fail(`cannot listen on 127.0.0.1:${port}: ${error.message}`));
const realPort = server.address().port;
const issuer = `http://127.0.0.1:${realPort}${prefix}`;

const clientMetadata = (clientId, grantTypes) => ({
  client_id: clientId,
  client_secret: `${clientId}-secret`,
  grant_types: grantTypes,
  response_types: [],
  redirect_uris: [],
  // Both client_secret_basic and client_secret_post authenticate a client registered with either.
  token_endpoint_auth_method: 'client_secret_basic',
  id_token_signed_response_alg: signingKey.alg,
});

/** May `caller` introspect or revoke `token`? The resource server every token, others their own. */
const mayHandle = (ctx, caller, token) =>
  caller.clientId === RESOURCE_SERVER_CLIENT || caller.clientId === token.clientId;

const provider = new Provider(issuer, {
  clients: [
    ...Object.keys(CLAIMS).map((clientId) => clientMetadata(clientId, ['client_credentials'])),
    clientMetadata(RESOURCE_SERVER_CLIENT, []),
  ],
  clientDefaults: { id_token_signed_response_alg: signingKey.alg },
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true, allowedPolicy: mayHandle },
    revocation: { enabled: true, allowedPolicy: mayHandle },
    resourceIndicators: {
      enabled: true,
      defaultResource: (ctx, client, oneOf) => oneOf ?? options.audience,
      getResourceServerInfo(ctx, resource) {
        const format = resources.get(resource);
        if (!format) throw new errors.InvalidTarget(`unknown resource ${resource}`);
        return {
          scope: SCOPE,
          audience: resource,
          accessTokenFormat: format,
          ...(format === 'jwt' ? { jwt: { sign: { alg: signingKey.alg, kid: signingKey.kid } } } : {}),
        };
      },
    },
  },
  ttl: {
    ClientCredentials: (ctx, token, client) => (client.clientId === 'shortlived' ? SHORT_TTL : tokenTtl),
  },
  extraTokenClaims: (ctx, token) => structuredClone(CLAIMS[token.clientId]),
});

// The JWKS as asked: with the keys of --also-key-file, and the Cache-Control of --jwks-max-age.
provider.use(async (ctx, next) => {
  await next();
  if (ctx.oidc?.route !== 'jwks' || ctx.status !== 200) return;
  if (publishedToo.length) {
    const type = ctx.response.get('Content-Type');
    ctx.body = { keys: [...ctx.body.keys, ...publishedToo] };
    ctx.set('Content-Type', type);
  }
  if (jwksMaxAge !== undefined) ctx.set('Cache-Control', `max-age=${jwksMaxAge}`);
});
provider.on('server_error', (ctx, error) => log(`server error: ${error.stack}`));
for (const event of ['grant.error', 'introspection.error', 'revocation.error', 'jwks.error', 'discovery.error']) {
  provider.on(event, (ctx, error) => log(`${event}: ${error.message} ${error.error_description ?? ''}`));
}

const answer = provider.callback();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
server.on('request', async (req, res) => {
  const started = Date.now();
  const { method, url } = req;
  res.on('finish', () => log(`${method} ${url} ${res.statusCode} (${Date.now() - started} ms)`));
  let { pathname } = new URL(req.url, 'http://127.0.0.1');
  count(pathname);

  if (req.method === 'GET' && pathname === `${prefix}/test/counters`) {
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
    res.end(JSON.stringify(counters));
    return;
  }
  if (jwksDelayMs && pathname === `${prefix}/jwks`) await sleep(jwksDelayMs);

  if (prefix) {
    // RFC 8414 path-inserted metadata, when asked for: answered as <issuer>/.well-known/...
    const wellKnown = pathname.match(/^(\/\.well-known\/(?:oauth-authorization-server|openid-configuration))(\/.*)$/);
    if (options['path-inserted-metadata'] && wellKnown?.[2] === prefix) {
      pathname = `${prefix}${wellKnown[1]}`;
      req.url = pathname;
    }
    if (pathname !== prefix && !pathname.startsWith(`${prefix}/`)) {
      res.writeHead(404, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: 'not_found', error_description: `not under ${prefix}` }));
      return;
    }
    // Mounted under the prefix: oidc-provider routes the rest, and finds the prefix (for the
    // URLs in its metadata) in originalUrl.
    req.originalUrl = req.url;
    req.url = req.url.slice(prefix.length);
    if (!req.url.startsWith('/')) req.url = `/${req.url}`;
  }
  answer(req, res);
});

function stop(signal) {
  log(`${signal}: stopping`);
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.once('SIGTERM', stop);
process.once('SIGINT', stop);

log(`listening, issuer ${issuer}; resources: ${[...resources].map(([url, format]) => `${url} (${format})`).join(', ')}`);
process.stdout.write(`${JSON.stringify({ issuer, port: realPort, kid: signingKey.kid })}\n`);
