// node-oidc-provider set up as the benchmark's peer authorization server.
//
// Usage: node oidc_provider.mjs PORT
//
// The benchmark copies this file next to the node_modules folder it installs
// under bench/.cache/node, so that the import of "oidc-provider" resolves there.
//
// Set-up, chosen to match frontauth's development profile where the two differ:
// - access tokens are JWTs signed with ES256, issued for one resource indicator
//   (RFC 8707), with a one-hour lifetime;
// - refresh tokens are issued with every code and rotate on every use;
// - an interaction route signs the user in and approves every requested scope at
//   once, so after the first flow a browser with the session cookie gets its code
//   straight from the authorization endpoint (the steady state being measured);
// - storage is an in-memory adapter of this file, without a size limit. The
//   library's own memory adapter keeps at most 1,000 entries and, at several
//   hundred flows per second, evicted registered clients in the middle of a
//   run (invalid_client at the authorization and token endpoints).

import * as crypto from 'node:crypto';

import * as jose from 'jose';
import Provider from 'oidc-provider';

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error(`usage: node oidc_provider.mjs PORT (got ${process.argv[2]})`);
  process.exit(2);
}

const ISSUER = `http://127.0.0.1:${port}`;
const RESOURCE = `${ISSUER}/mcp`;
const ACCOUNT_ID = 'bench-user';

const { privateKey } = await jose.generateKeyPair('ES256', { extractable: true });
const signingKey = { ...(await jose.exportJWK(privateKey)), alg: 'ES256', use: 'sig', kid: 'bench-es256' };

// Models whose records belong to a grant, so that revoking the grant deletes them.
const GRANT_MEMBERS = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode',
  'BackchannelAuthenticationRequest']);
const SWEEP_INTERVAL_MS = 10_000;

// One store for every model: key "Model:id" -> { payload, expiresAt } (ms, or Infinity).
const records = new Map();
const sessionsByUid = new Map();
const keysByGrant = new Map();

function liveRecord(key) {
  const record = records.get(key);
  if (record === undefined) return undefined;
  if (record.expiresAt <= Date.now()) {
    forget(key);
    return undefined;
  }
  return record;
}

function forget(key) {
  const record = records.get(key);
  if (record === undefined) return;
  records.delete(key);
  const { uid, grantId } = record.payload;
  if (uid !== undefined && sessionsByUid.get(uid) === key) sessionsByUid.delete(uid);
  if (grantId !== undefined) keysByGrant.get(grantId)?.delete(key);
}

setInterval(() => {
  const now = Date.now();
  for (const [key, record] of records) {
    if (record.expiresAt <= now) forget(key);
  }
  for (const [grantId, keys] of keysByGrant) {
    if (keys.size === 0) keysByGrant.delete(grantId);
  }
}, SWEEP_INTERVAL_MS).unref();

class UnboundedMemoryAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    forget(key);
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity;
    records.set(key, { payload, expiresAt });
    if (this.model === 'Session' && payload.uid !== undefined) sessionsByUid.set(payload.uid, key);
    if (GRANT_MEMBERS.has(this.model) && payload.grantId !== undefined) {
      let keys = keysByGrant.get(payload.grantId);
      if (keys === undefined) {
        keys = new Set();
        keysByGrant.set(payload.grantId, keys);
      }
      keys.add(key);
    }
  }

  async find(id) {
    return liveRecord(this.key(id))?.payload;
  }

  async findByUid(uid) {
    const key = sessionsByUid.get(uid);
    return key === undefined ? undefined : liveRecord(key)?.payload;
  }

  async findByUserCode() {
    // The device flow is off, so no record has a user code.
    return undefined;
  }

  async consume(id) {
    const record = liveRecord(this.key(id));
    if (record !== undefined) record.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    forget(this.key(id));
  }

  async revokeByGrantId(grantId) {
    const keys = keysByGrant.get(grantId);
    if (keys === undefined) return;
    keysByGrant.delete(grantId);
    for (const key of keys) forget(key);
  }
}

const configuration = {
  adapter: UnboundedMemoryAdapter,
  jwks: { keys: [signingKey] },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  scopes: ['openid', 'offline_access'],
  clientDefaults: {
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
    id_token_signed_response_alg: 'ES256',
  },
  enabledJWA: {
    idTokenSigningAlgValues: ['ES256'],
  },
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => RESOURCE,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resourceIndicator) => {
        if (resourceIndicator !== RESOURCE) {
          throw new Error(`unknown resource ${resourceIndicator}`);
        }
        return {
          scope: 'mcp',
          audience: RESOURCE,
          accessTokenTTL: 3600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
  pkce: { required: () => true },
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: () => true,
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 60,
    Grant: 7 * 86400,
    Interaction: 600,
    RefreshToken: 7 * 86400,
    Session: 8 * 3600,
  },
};

const provider = new Provider(ISSUER, configuration);

// Hidden errors would make a failing peer look fast: log every server error once.
provider.on('server_error', (ctx, error) => console.error('server_error', error));

// The auto-approving interaction: sign the benchmark user in, then grant every
// scope and resource the client asked for.
provider.use(async (ctx, next) => {
  if (ctx.method !== 'GET' || !ctx.path.startsWith('/interaction/')) {
    await next();
    return;
  }
  const interaction = await provider.interactionDetails(ctx.req, ctx.res);
  const { prompt, params, session } = interaction;
  let result;
  if (prompt.name === 'login') {
    result = { login: { accountId: ACCOUNT_ID } };
  } else if (prompt.name === 'consent') {
    const grant = interaction.grantId
      ? await provider.Grant.find(interaction.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const missingOIDC = prompt.details.missingOIDCScope;
    if (missingOIDC) {
      grant.addOIDCScope(missingOIDC.join(' '));
    }
    for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    result = { consent: { grantId: await grant.save() } };
  } else {
    ctx.status = 500;
    ctx.body = `unexpected prompt ${prompt.name}`;
    return;
  }
  const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: true });
  ctx.status = 303;
  ctx.redirect(returnTo);
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${ISSUER}`);
});
