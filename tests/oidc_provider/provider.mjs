// A real OpenID Provider for keyportal's tests: panva's oidc-provider (OpenID Certified),
// configured with one confidential client (the portal), two people and their groups.
//
// Environment: KP_REDIRECT_URI (the portal's /auth/oidc/callback), KP_POST_LOGOUT_URI,
// KP_CLIENT_SECRET. Listens on 127.0.0.1, a free port, and prints one JSON line
// {"issuer": "..."} on stdout once it answers.
//
// The sign-in page is this file's own (/interaction/:uid: a username and password form);
// consent is implied, as for a first-party client. Tests change the provider's state through
// /__test/ (this process's test controls, not part of oidc-provider):
//   PUT    /__test/accounts/:id  {password, name, email, groups}  add or replace a person
//   DELETE /__test/accounts/:id                                   remove a person
//   POST   /__test/tamper        {mode}  the next token response's ID token is re-signed with
//          one thing wrong: issuer | audience | expired | nonce | unknown_kid, or
//          rotated_kid (signed with a new key that the key set now also publishes: a real
//          key rotation, which the portal must follow)
import http from 'node:http';
import { randomUUID } from 'node:crypto';

import Provider from 'oidc-provider';
import { SignJWT, decodeJwt, exportJWK, generateKeyPair } from 'jose';

const redirectUri = process.env.KP_REDIRECT_URI;
const postLogoutUri = process.env.KP_POST_LOGOUT_URI;
const clientSecret = process.env.KP_CLIENT_SECRET ?? 'keyportal-test-secret';
if (!redirectUri || !postLogoutUri) {
  console.error('set KP_REDIRECT_URI and KP_POST_LOGOUT_URI');
  process.exit(2);
}

async function signingKey(kid) {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
  const pub = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' };
  return { privateKey, jwk, pub };
}
const current = await signingKey('k1');
const next = await signingKey('k2');
const rogue = await signingKey('never-published');

const accounts = new Map([
  ['alice', { password: 'alice-pass', name: 'Alice Example', email: 'alice@example.test', groups: ['ops', 'keyportal-admins'] }],
  ['bob', { password: 'bob-pass', name: 'Bob Example', email: 'bob@example.test', groups: ['dev'] }],
]);

let tamper = null;
let rotated = false;

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'keyportal',
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    post_logout_redirect_uris: [postLogoutUri],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [current.jwk] },
  cookies: { keys: [randomUUID()] },
  async findAccount(_ctx, id) {
    const a = accounts.get(id);
    if (!a) return undefined;
    return {
      accountId: id,
      async claims() {
        const now = accounts.get(id) ?? a;
        return {
          sub: id, preferred_username: id, name: now.name, email: now.email, email_verified: true, groups: now.groups,
        };
      },
    };
  },
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  scopes: ['openid', 'offline_access', 'profile', 'email', 'groups'],
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: { enabled: true },
  },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  // Refresh tokens for the portal's re-checks, living apart from the provider's browser
  // session (as offline access would).
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  expiresWithSession: async () => false,
  // Every refresh hands out a new refresh token and consumes the old one; using an old one
  // again revokes the grant (as providers that rotate do), so the portal must never ask twice
  // with one token.
  rotateRefreshToken: true,
  pkce: { required: () => true },
});

// The test controls' re-signing of ID tokens on their way out of the token endpoint, and the
// rotated key's publication in the key set.
provider.use(async (ctx, nextMiddleware) => {
  await nextMiddleware();
  if (ctx.path === '/token' && ctx.status === 200 && ctx.body?.id_token && tamper) {
    const mode = tamper;
    tamper = null;
    ctx.body = { ...ctx.body, id_token: await resign(ctx.body.id_token, mode) };
  }
  if (ctx.path === '/jwks' && ctx.status === 200 && rotated && ctx.body?.keys) {
    ctx.body = { keys: [...ctx.body.keys, next.pub] };
  }
});

async function resign(idToken, mode) {
  const claims = decodeJwt(idToken);
  const now = Math.floor(Date.now() / 1000);
  let key = current;
  switch (mode) {
    case 'issuer': claims.iss = 'http://127.0.0.1:9/another-issuer'; break;
    case 'audience': claims.aud = 'another-client'; break;
    case 'expired': claims.iat = now - 7200; claims.exp = now - 3600; break;
    case 'nonce': claims.nonce = 'a-nonce-this-portal-never-sent'; break;
    case 'unknown_kid': key = rogue; break;
    case 'rotated_kid': rotated = true; key = next; break;
    default: throw new Error(`unknown tamper mode ${mode}`);
  }
  return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: key.jwk.kid, typ: 'JWT' }).sign(key.privateKey);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => resolve(body));
    req.on('error', reject);
  });
}

function send(res, status, type, body) {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(uid, error) {
  return `<!doctype html><html><head><title>Test IdP sign-in</title></head><body>
<h1>Test IdP</h1>${error ? `<p id="idp-error">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}">
<label>Username <input id="idp-username" name="username" autocomplete="off"></label>
<label>Password <input id="idp-password" name="password" type="password"></label>
<button id="idp-sign-in" type="submit">Sign in</button></form></body></html>`;
}

async function interaction(req, res, uid) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) return send(res, 400, 'text/plain', 'interaction mismatch');
  if (details.prompt.name === 'login') {
    if (req.method !== 'POST') return send(res, 200, 'text/html', loginPage(uid, ''));
    const form = new URLSearchParams(await readBody(req));
    const id = form.get('username') ?? '';
    const a = accounts.get(id);
    if (!a || a.password !== form.get('password')) {
      return send(res, 401, 'text/html', loginPage(uid, 'Wrong username or password.'));
    }
    return provider.interactionFinished(req, res, { login: { accountId: id } }, { mergeWithLastSubmission: false });
  }
  // Consent: a first-party client gets what it asked for.
  const { params, session, prompt: { details: missing } } = details;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

async function controls(req, res, path) {
  const body = req.method === 'GET' || req.method === 'DELETE' ? '' : await readBody(req);
  const json = body ? JSON.parse(body) : {};
  const account = path.match(/^\/__test\/accounts\/([^/]+)$/);
  if (account && req.method === 'PUT') {
    accounts.set(decodeURIComponent(account[1]), json);
    return send(res, 204, 'text/plain', '');
  }
  if (account && req.method === 'DELETE') {
    accounts.delete(decodeURIComponent(account[1]));
    return send(res, 204, 'text/plain', '');
  }
  if (path === '/__test/tamper' && req.method === 'POST') {
    tamper = json.mode;
    return send(res, 204, 'text/plain', '');
  }
  return send(res, 404, 'text/plain', 'no such control');
}

const callback = provider.callback();
server.on('request', (req, res) => {
  const path = new URL(req.url, issuer).pathname;
  const interactionUid = path.match(/^\/interaction\/([^/]+)$/);
  const handled = path.startsWith('/__test/')
    ? controls(req, res, path)
    : interactionUid
      ? interaction(req, res, interactionUid[1])
      : Promise.resolve(callback(req, res));
  handled.catch((err) => {
    console.error(err);
    if (!res.headersSent) send(res, 500, 'text/plain', String(err));
  });
});

console.log(JSON.stringify({ issuer }));
