// Driving the authorization server's login and consent pages without a browser: fetch with
// manual redirects, a small cookie jar (the session cookie set at login), and an HTML form
// reader (action, hidden inputs, scope checkboxes, decision buttons). Only for our own pages:
// this is not a general HTML parser.

import assert from 'node:assert/strict';

/** A cookie jar for one origin; `fetch` never follows redirects (the caller reads Location). */
export class Browserless {
  #cookies = new Map();

  /** `fetch` with the jar's cookies, redirect: 'manual'; stores cookies the response sets. */
  async fetch(url, init = {}) {
    const headers = new Headers(init.headers);
    if (this.#cookies.size) {
      headers.set('cookie', [...this.#cookies].map(([k, v]) => `${k}=${v}`).join('; '));
    }
    const response = await fetch(url, { ...init, headers, redirect: 'manual' });
    for (const cookie of response.headers.getSetCookie()) {
      const [pair] = cookie.split(';');
      const eq = pair.indexOf('=');
      if (eq > 0) this.#cookies.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
    }
    return response;
  }

  /** POSTs a form the way a browser does (urlencoded, with the page's Origin). */
  post(action, fields) {
    return this.fetch(action, {
      method: 'POST',
      headers: { origin: new URL(action).origin },
      body: new URLSearchParams(fields),
    });
  }
}

/** Decodes the HTML character references our templates produce. */
export function decodeHtml(text) {
  return text.replace(/&(#x[0-9a-f]+|#[0-9]+|amp|lt|gt|quot|apos);/gi, (_, ref) => {
    const named = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }[ref.toLowerCase()];
    if (named) return named;
    const code = ref[1] === 'x' || ref[1] === 'X' ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
    return String.fromCodePoint(code);
  });
}

/** The attributes of one tag, names lower-cased; a bare attribute (`checked`) maps to ''. */
function attributes(source) {
  const out = {};
  for (const m of source.matchAll(/([^\s=/>"']+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+)))?/g)) {
    out[m[1].toLowerCase()] = decodeHtml(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return out;
}

/** Every `<form>` of a page: its absolute action, method and controls (inputs and buttons). */
export function forms(html, pageUrl) {
  return [...html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)].map(([, attrs, body]) => {
    const form = attributes(attrs);
    const controls = [...body.matchAll(/<(input|button)\b([^>]*)>/gi)].map(([, tag, a]) => ({
      tag: tag.toLowerCase(),
      ...attributes(a),
    }));
    return {
      action: new URL(form.action || pageUrl, pageUrl).href,
      method: (form.method || 'get').toLowerCase(),
      controls,
    };
  });
}

/** The visible text of a page (tags stripped), for assertions and failure messages. */
export function pageText(html) {
  return decodeHtml(html.replace(/<style[\s\S]*?<\/style>/gi, '').replace(/<[^>]+>/g, ' '))
    .replace(/\s+/g, ' ')
    .trim();
}

/** The hidden fields of a form, as [name, value] pairs. */
function hiddenFields(form) {
  return form.controls.filter((c) => c.tag === 'input' && c.type === 'hidden' && c.name).map((c) => [c.name, c.value ?? '']);
}

/** The scope checkboxes of a consent form: [{ value, checked }]. */
export function scopeBoxes(form) {
  return form.controls
    .filter((c) => c.tag === 'input' && c.type === 'checkbox' && c.name === 'scope')
    .map((c) => ({ value: c.value, checked: 'checked' in c }));
}

/**
 * Follows an authorization request through the login and consent pages to the redirect back
 * to the client, and returns that URL plus what the consent page showed.
 *
 * options: `redirectUri` (where the flow ends), `username`, `password`, `decision`
 * ('approve' | 'deny'), `scopes` (the scopes to leave checked; default: as the page checked
 * them), `session` (a Browserless to reuse cookies across flows).
 */
export async function authorizeWithoutBrowser(url, options) {
  const session = options.session ?? new Browserless();
  const seen = { login: 0, consent: 0, consentScopes: null, consentText: null };
  let current = new URL(url);
  let response = await session.fetch(current);
  for (let hop = 0; hop < 8; hop += 1) {
    if (response.status >= 300 && response.status < 400) {
      const location = response.headers.get('location');
      assert.ok(location, `${response.status} without Location from ${current}`);
      const next = new URL(location, current);
      if (next.href.startsWith(options.redirectUri)) return { redirect: next, status: response.status, ...seen };
      current = next;
      response = await session.fetch(current);
      continue;
    }
    const html = await response.text();
    assert.equal(response.status, 200, `${current} answered ${response.status}: ${pageText(html).slice(0, 400)}`);
    const all = forms(html, current);
    const login = all.find((f) => f.controls.some((c) => c.type === 'password'));
    const consent = all.find((f) => f.controls.some((c) => c.name === 'decision'));
    if (login) {
      seen.login += 1;
      assert.ok(seen.login <= 1, `the login page came back: ${pageText(html).slice(0, 400)}`);
      const fields = [...hiddenFields(login), ['username', options.username], ['password', options.password]];
      current = new URL(login.action);
      response = await session.post(login.action, fields);
    } else if (consent) {
      seen.consent += 1;
      assert.ok(seen.consent <= 1, 'the consent page came back after a decision');
      const boxes = scopeBoxes(consent);
      seen.consentScopes = boxes.map((b) => b.value);
      seen.consentText = pageText(html);
      const keep = boxes.filter((b) => (options.scopes ? options.scopes.includes(b.value) : b.checked));
      const fields = [...hiddenFields(consent), ...keep.map((b) => ['scope', b.value]), ['decision', options.decision ?? 'approve']];
      current = new URL(consent.action);
      response = await session.post(consent.action, fields);
    } else {
      throw new Error(`neither a login nor a consent form at ${current}: ${pageText(html).slice(0, 400)}`);
    }
  }
  throw new Error(`no redirect to ${options.redirectUri} after 8 hops (last: ${current})`);
}
