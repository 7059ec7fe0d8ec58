// node-oidc-provider as the upstream identity provider of the acceptance tests.
//
// Usage: node oidc_provider.mjs PORT CALLBACK_URL CLIENT_SECRET
//
// The tests copy this file next to the node_modules folder they install under
// tests/.cache/oidc-provider, so that the import of "oidc-provider" resolves.
//
// Set-up:
// - "frontauth" is a confidential client (client_secret_basic) for the remote
//   mode flow, redirecting to CALLBACK_URL; sign-in and consent use the
//   provider's own development forms (any login name and password sign in);
// - "resource-tester" gets JWT access tokens through the client_credentials
//   grant for one of the resources below, which the transparent mode tests verify.

import * as crypto from 'node:crypto';

import * as jose from 'jose';
import Provider from 'oidc-provider';

const [port, callbackUrl, clientSecret] = [Number(process.argv[2]), process.argv[3], process.argv[4]];
if (!Number.isInteger(port) || !callbackUrl || !clientSecret) {
  console.error('usage: node oidc_provider.mjs PORT CALLBACK_URL CLIENT_SECRET');
  process.exit(2);
}

const ISSUER = `http://127.0.0.1:${port}`;
// resource -> access token lifetime in seconds; "short" tokens test expiry.
const RESOURCES = {
  'https://mcp.example/mcp': 300,
  'https://other.example/mcp': 300,
  'https://short.example/mcp': 1,
};

const { privateKey } = await jose.generateKeyPair('ES256', { extractable: true });
const signingKey = { ...(await jose.exportJWK(privateKey)), alg: 'ES256', use: 'sig', kid: 'test-es256' };

const provider = new Provider(ISSUER, {
  jwks: { keys: [signingKey] },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  scopes: ['openid', 'email', 'offline_access', 'mcp', 'other'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  clients: [
    {
      client_id: 'frontauth',
      client_secret: clientSecret,
      redirect_uris: [callbackUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      client_id: 'resource-tester',
      client_secret: clientSecret,
      redirect_uris: [],
      response_types: [],
      grant_types: ['client_credentials'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  clientDefaults: { id_token_signed_response_alg: 'ES256' },
  enabledJWA: { idTokenSigningAlgValues: ['ES256'] },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => undefined,
      useGrantedResource: async () => false,
      getResourceServerInfo: async (ctx, indicator) => {
        if (!(indicator in RESOURCES)) {
          throw new Error(`unknown resource ${indicator}`);
        }
        return {
          scope: 'mcp other',
          audience: indicator,
          accessTokenTTL: RESOURCES[indicator],
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
  pkce: { required: () => true },
  findAccount: async (ctx, sub) => ({
    accountId: sub,
    claims: async () => ({ sub, email: `${sub}@oidc.example`, email_verified: true }),
  }),
});

provider.on('server_error', (ctx, error) => console.error('server_error', error));

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${ISSUER}`);
});
