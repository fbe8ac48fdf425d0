// A stand-in for a person at a browser, for tests/readme.rs: MCP Inspector opens the
// authorization URL it prints with `xdg-open`, which hands it to `$BROWSER`, set to this script.
// It signs in as E2E_USER with E2E_PASSWORD and approves the consent page as it is shown, the
// way a person would, then loads the redirect, which delivers the code to the loopback callback
// Inspector listens on.
//
// Usage: node sign-in.mjs AUTHORIZATION_URL

import { appendFileSync } from 'node:fs';

import { authorizeWithoutBrowser } from './lib/pages.mjs';

// xdg-open runs a browser detached, with nobody reading its output: a log file (when asked
// for) says what happened, and a timer makes sure the process never outlives the test.
const log = (line) => {
  if (process.env.SIGN_IN_LOG) appendFileSync(process.env.SIGN_IN_LOG, `${line}\n`);
};
setTimeout(() => {
  log('sign-in: gave up after 60 s');
  process.exit(2);
}, 60_000).unref();

try {
  const [url] = process.argv.slice(2);
  if (!url) throw new Error('usage: node sign-in.mjs AUTHORIZATION_URL');
  const redirectUri = new URL(url).searchParams.get('redirect_uri');
  if (!redirectUri) throw new Error(`no redirect_uri in ${url}`);
  const { redirect, consent } = await authorizeWithoutBrowser(url, {
    redirectUri,
    username: process.env.E2E_USER,
    password: process.env.E2E_PASSWORD,
  });
  log(`sign-in: signed in, ${consent} consent page(s), redirected to ${redirect.origin}${redirect.pathname}`);
  const delivered = await fetch(redirect);
  log(`sign-in: the callback answered ${delivered.status}`);
} catch (error) {
  log(`sign-in: ${error.stack ?? error}`);
  process.exit(1);
}
