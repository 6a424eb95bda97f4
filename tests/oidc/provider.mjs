// A real OpenID provider for Pregonero's tests: oidc-provider (OpenID Certified) configured like a
// Keycloak realm. Issuer `http://127.0.0.1:<port>/realms/<realm>`, endpoints under
// `/protocol/openid-connect/…`, RS256, PKCE S256 required, refresh tokens, JWT access tokens, and
// roles in Keycloak's shape (`realm_access.roles`, `resource_access.<client>.roles`).
//
// Any login is accepted with any password (oidc-provider's development login form); the login
// name picks the roles: `admin…` → admin, `viewer…` → viewer, `norole…` → none, else operator.
//
// Settings (environment): OIDC_PORT, OIDC_REALM, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET,
// OIDC_REDIRECT_URIS and OIDC_POST_LOGOUT_URIS (comma-separated), OIDC_ID_TOKEN_TTL and
// OIDC_ACCESS_TOKEN_TTL (seconds). The signing key is new at every start, with a new `kid`:
// restarting the provider is a key rotation. Prints `ready <port>` when it listens.
import http from 'node:http';
import crypto from 'node:crypto';

import Provider from 'oidc-provider';

const env = process.env;
const port = Number(env.OIDC_PORT || 0);
const realm = env.OIDC_REALM || 'pregonero';
const clientId = env.OIDC_CLIENT_ID || 'pregonero';
const clientSecret = env.OIDC_CLIENT_SECRET || 'pregonero-test-secret';
const list = (v) => (v || '').split(',').map((s) => s.trim()).filter(Boolean);
const prefix = `/realms/${realm}`;
// The resource server (our API); access tokens for it carry `aud: <client id>` like Keycloak's.
const resource = 'urn:pregonero:api';

function rolesFor(login) {
  if (login.startsWith('admin')) return ['admin'];
  if (login.startsWith('viewer')) return ['viewer'];
  if (login.startsWith('norole')) return [];
  return ['operator'];
}

// Keycloak puts realm roles and client roles in these two claims.
function roleClaims(login) {
  const roles = rolesFor(login);
  return {
    realm_access: { roles: [...roles, 'offline_access'] },
    resource_access: { [clientId]: { roles } },
  };
}

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), use: 'sig', alg: 'RS256' };

const configuration = {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: list(env.OIDC_REDIRECT_URIS),
    post_logout_redirect_uris: list(env.OIDC_POST_LOGOUT_URIS),
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [jwk] },
  pkce: { required: () => true },
  scopes: ['openid', 'offline_access', 'profile', 'email', 'roles'],
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
    roles: ['realm_access', 'resource_access'],
  },
  // Keycloak puts the profile, email and role claims in the ID token too.
  conformIdTokenClaims: false,
  async findAccount(_ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return {
          sub,
          name: `Test ${sub}`,
          preferred_username: sub,
          email: `${sub}@example.test`,
          email_verified: true,
          ...roleClaims(sub),
        };
      },
    };
  },
  // Consent is not asked (like a Keycloak client with "Consent required" off).
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid offline_access profile email roles');
    grant.addOIDCClaims(['realm_access', 'resource_access', 'name', 'email']);
    grant.addResourceScope(resource, 'openid offline_access profile email roles');
    await grant.save();
    return grant;
  },
  // Refresh tokens for every code grant, as Keycloak does.
  async issueRefreshToken(_ctx, client) {
    return client.grantTypeAllowed('refresh_token');
  },
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: {
      enabled: true,
      // Keycloak signs out at once when id_token_hint is given; answer the confirmation form
      // automatically instead of asking the user.
      async logoutSource(ctx, form) {
        ctx.body = `<!DOCTYPE html><html><body>${form}<script>document.forms[0].submit()</script></body></html>`;
      },
    },
    // JWT access tokens with the client as audience (Keycloak's access tokens are JWTs).
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'openid offline_access profile email roles',
        audience: clientId,
        accessTokenFormat: 'jwt',
        accessTokenTTL: Number(env.OIDC_ACCESS_TOKEN_TTL || 300),
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  async extraTokenClaims(_ctx, token) {
    return { ...roleClaims(token.accountId), azp: clientId, typ: 'Bearer' };
  },
  routes: {
    authorization: '/protocol/openid-connect/auth',
    token: '/protocol/openid-connect/token',
    userinfo: '/protocol/openid-connect/userinfo',
    jwks: '/protocol/openid-connect/certs',
    end_session: '/protocol/openid-connect/logout',
    revocation: '/protocol/openid-connect/revoke',
    introspection: '/protocol/openid-connect/token/introspect',
  },
  ttl: {
    IdToken: Number(env.OIDC_ID_TOKEN_TTL || 300),
    RefreshToken: 3600,
    AuthorizationCode: 60,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
  },
};

const server = http.createServer();
server.listen(port, '127.0.0.1', () => {
  const actual = server.address().port;
  const provider = new Provider(`http://127.0.0.1:${actual}${prefix}`, configuration);
  provider.on('server_error', (_ctx, err) => console.error('server_error', err));
  const callback = provider.callback();
  server.on('request', (req, res) => {
    if (!req.url.startsWith(`${prefix}/`)) {
      res.writeHead(404).end();
      return;
    }
    req.originalUrl = req.url;
    req.url = req.url.slice(prefix.length);
    callback(req, res);
  });
  console.log(`ready ${actual}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
