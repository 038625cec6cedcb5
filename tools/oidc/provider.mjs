// A real OpenID Connect provider for the sign-in tests (tests/auth): panva's certified
// oidc-provider with its own login and consent pages, one confidential client, and accounts
// whose `roles` claim says who they are (see ACCOUNTS).
//
// Usage: node provider.mjs PORT REDIRECT_URI POST_LOGOUT_URI  (the issuer URL names PORT)
// Prints one JSON line {"issuer": ...} on standard output once it listens.
//
// Bad input for the relying party, on purpose, through POST /_test/mode {"mode": NAME}: the
// next ID tokens the token endpoint issues are changed before they leave. The provider itself
// stays as it is; only what the relying party receives changes:
//   normal          as issued
//   expired         exp and iat an hour and two in the past, signed again with the real key
//   wrong-audience  aud of another client, signed again with the real key
//   wrong-issuer    iss of another provider, signed again with the real key
//   forged          another user, an admin, with the original signature kept
//   unknown-key     signed with a key the provider never published
//   rotated         signed with a new key that /jwks publishes from now on (a key rotation)
//   token-down      the token endpoint drops every connection (a provider gone mid-sign-in)
import { randomBytes } from 'node:crypto';

import * as jose from 'jose';
import Provider from 'oidc-provider';

const [port, redirectUri, postLogoutUri] = process.argv.slice(2);
if (!Number(port) || !redirectUri || !postLogoutUri) {
  console.error('usage: node provider.mjs PORT REDIRECT_URI POST_LOGOUT_URI');
  process.exit(2);
}

const CLIENT_ID = 'phoney-dashboard';
const CLIENT_SECRET = 'phoney-dashboard-test-secret-0123456789';

// Login name -> roles claim (undefined: the ID token has no roles claim at all).
const ACCOUNTS = {
  vera: ['viewer'],
  otto: ['operator'],
  edith: ['editor', 'viewer'],
  ada: ['admin'],
  nora: undefined,
  mallory: ['superuser'],
};

async function signingKey(kid) {
  const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
  return { ...(await jose.exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
}

const current = await signingKey('key-a');
const rotatedKey = await signingKey('key-b');
const unknownKey = await signingKey('key-unpublished');
const publicPart = ({ d, p, q, dp, dq, qi, ...rest }) => rest;

let mode = 'normal';
let rotated = false;
const served = { token: 0, jwks: 0 };

const configuration = {
  clients: [{
    client_id: CLIENT_ID,
    client_secret: CLIENT_SECRET,
    redirect_uris: [redirectUri],
    post_logout_redirect_uris: [postLogoutUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [current] },
  cookies: { keys: [randomBytes(16).toString('hex')] },
  claims: { openid: ['sub', 'roles'], email: ['email', 'email_verified'], profile: ['name'] },
  conformIdTokenClaims: false, // the roles claim in the ID token itself, as IdPs configure it
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        const claims = { sub: id, email: `${id}@example.com`, email_verified: true, name: id };
        if (ACCOUNTS[id] !== undefined) claims.roles = ACCOUNTS[id];
        return claims;
      },
    };
  },
};

function b64json(part) {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

async function resign(payload, jwk) {
  const key = await jose.importJWK(jwk, 'RS256');
  return new jose.CompactSign(Buffer.from(JSON.stringify(payload)))
    .setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: jwk.kid })
    .sign(key);
}

async function changed(idToken) {
  const [header, body, signature] = idToken.split('.');
  const payload = b64json(body);
  const now = Math.floor(Date.now() / 1000);
  switch (mode) {
    case 'expired':
      return resign({ ...payload, iat: now - 7200, exp: now - 3600 }, current);
    case 'wrong-audience':
      return resign({ ...payload, aud: 'another-client' }, current);
    case 'wrong-issuer':
      return resign({ ...payload, iss: 'https://idp.example.net' }, current);
    case 'forged': {
      const forged = Buffer.from(JSON.stringify({
        ...payload, sub: 'mallory', email: 'mallory@example.com', roles: ['admin'],
      }))
        .toString('base64url');
      return `${header}.${forged}.${signature}`;
    }
    case 'unknown-key':
      return resign(payload, unknownKey);
    case 'rotated':
      return resign(payload, rotatedKey);
    default:
      return idToken;
  }
}

const provider = new Provider(`http://localhost:${port}`, configuration);
provider.proxy = false;

provider.use(async (ctx, next) => {
  if (ctx.path === '/_test/mode' && ctx.method === 'POST') {
    const chunks = [];
    for await (const chunk of ctx.req) chunks.push(chunk);
    mode = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}').mode || 'normal';
    if (mode === 'rotated') rotated = true;
    ctx.body = { mode, served };
    return;
  }
  if (ctx.path === '/_test/served' && ctx.method === 'GET') {
    ctx.body = { mode, served };
    return;
  }
  if (ctx.path === '/token' && mode === 'token-down') {
    ctx.req.socket.destroy();
    return;
  }
  await next();
  if (ctx.path === '/token' && ctx.body && typeof ctx.body.id_token === 'string') {
    served.token += 1;
    ctx.body = { ...ctx.body, id_token: await changed(ctx.body.id_token) };
  }
  if (ctx.path === '/jwks' && ctx.body && Array.isArray(ctx.body.keys)) {
    served.jwks += 1;
    if (rotated) ctx.body = { keys: [...ctx.body.keys, publicPart(rotatedKey)] };
  }
});

const server = provider.listen(Number(port), 'localhost', () => {
  process.stdout.write(`${JSON.stringify({ issuer: `http://localhost:${port}` })}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
