// A real, OpenID Certified provider (panva's oidc-provider) configured the way
// a province's identity service would be, for the vneid adapter's
// interoperability tests (contract-tests/tests/oidc_interop.rs).
//
//   node provider.mjs            # listens on 127.0.0.1:<free port>
//
// Prints one JSON line, {"issuer": "http://127.0.0.1:<port>"}, once it
// listens. Everything a citizen app does goes through the provider's own
// endpoints (authorization code with PKCE, token, introspection, revocation,
// JWKS). Beside them, for the tests only:
//   POST /__test/keys   {"publish": ["rsa-b", "rsa-a", "ec-a"]}
//        publishes exactly these keys, in this order (the first of each
//        algorithm signs): a key rotation, add -> promote -> retire.
//   GET  /__test/hits   requests served per endpoint path.
//
// Accounts: "citizen-2" (identity level 2) and "citizen-1" (level 1).
// Resources (RFC 8707 resource indicators), each an access-token audience:
//   urn:lienthong:gateway   JWT (RS256) with VNeID's claims (SoDinhDanh, acr)
//   urn:lienthong:es256     the same, signed ES256
//   urn:lienthong:standard  JWT (RS256) as RFC 9068 has it: sub, acr, and the
//                           ID number under a standard-style name, national_id
//   urn:lienthong:opaque    opaque tokens, checked by introspection only (this
//                           provider introspects no JWT: unsupported_token_type)
// Clients: "citizen-app" (the app: code + PKCE, client_secret_basic) and
// "lienthong-gateway" (the gateway: introspection only).

import crypto from 'node:crypto';
import http from 'node:http';

import Provider from 'oidc-provider';

const ACCOUNTS = {
  'citizen-2': {
    level: '2', SoDinhDanh: '079192012345', HoVaTen: 'Trần Thị Bích', NgayThangNamSinh: '19920315',
    GioiTinh: 'Nữ', MaXaThuongTru: '26740',
  },
  'citizen-1': {
    level: '1', SoDinhDanh: '079192054321', HoVaTen: 'Nguyễn Văn An', NgayThangNamSinh: '19850101',
    GioiTinh: 'Nam', MaXaThuongTru: '26743',
  },
};

const RESOURCES = {
  'urn:lienthong:gateway': { format: 'jwt', alg: 'RS256', claims: 'vneid' },
  'urn:lienthong:es256': { format: 'jwt', alg: 'ES256', claims: 'vneid' },
  'urn:lienthong:standard': { format: 'jwt', alg: 'RS256', claims: 'standard' },
  'urn:lienthong:opaque': { format: 'opaque', claims: 'standard' },
};

function signingKey(kid, options) {
  const { privateKey } = crypto.generateKeyPairSync(options.type, options.params);
  return { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig', alg: options.alg };
}

const KEYS = {
  'rsa-a': signingKey('rsa-a', { type: 'rsa', params: { modulusLength: 2048 }, alg: 'RS256' }),
  'rsa-b': signingKey('rsa-b', { type: 'rsa', params: { modulusLength: 2048 }, alg: 'RS256' }),
  'ec-a': signingKey('ec-a', { type: 'ec', params: { namedCurve: 'P-256' }, alg: 'ES256' }),
};

const hits = {};

function configuration(published) {
  return {
    clients: [
      {
        client_id: 'citizen-app',
        client_secret: 'app-secret',
        redirect_uris: ['http://127.0.0.1:9/callback'],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
      {
        client_id: 'lienthong-gateway',
        client_secret: 'gateway-secret',
        redirect_uris: [],
        grant_types: [],
        response_types: [],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    jwks: { keys: published.map((kid) => KEYS[kid]) },
    cookies: { keys: ['lienthong-interop-cookie-key'] },
    pkce: { required: () => true },
    scopes: ['openid', 'offline_access', 'citizen'],
    claims: { openid: ['sub'], citizen: ['SoDinhDanh', 'HoVaTen', 'NgayThangNamSinh', 'GioiTinh', 'MaXaThuongTru'] },
    features: {
      devInteractions: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resource) => {
          const r = RESOURCES[resource];
          if (!r) throw new Provider.errors.InvalidTarget();
          return {
            scope: 'citizen',
            audience: resource,
            accessTokenTTL: 600,
            accessTokenFormat: r.format,
            ...(r.format === 'jwt' ? { jwt: { sign: { alg: r.alg } } } : {}),
          };
        },
      },
    },
    // What the provider knows of the account goes into access tokens for
    // resources (and so into introspection answers): VNeID's claims, or for
    // the standard resources the level and the ID number as `national_id`.
    extraTokenClaims: async (_ctx, token) => {
      const account = ACCOUNTS[token.accountId];
      const resource = RESOURCES[token.aud];
      if (!account || !resource) return undefined;
      if (resource.claims === 'vneid') {
        const { level, ...vneid } = account;
        return { ...vneid, acr: level };
      }
      return { acr: `urn:vn:loa:${account.level}`, national_id: account.SoDinhDanh };
    },
    findAccount: async (_ctx, id) => {
      const account = ACCOUNTS[id];
      if (!account) return undefined;
      return {
        accountId: id,
        claims: async () => {
          const { level: _level, ...claims } = account;
          return { sub: id, ...claims };
        },
      };
    },
    ttl: { AccessToken: 600, IdToken: 600, RefreshToken: 3600, Grant: 3600, Session: 3600, Interaction: 600 },
  };
}

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  let handle = new Provider(issuer, configuration(['rsa-a', 'ec-a'])).callback();
  server.on('request', (req, res) => {
    const path = req.url.split('?')[0];
    if (path === '/__test/hits') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(hits));
      return;
    }
    if (path === '/__test/keys' && req.method === 'POST') {
      let body = '';
      req.on('data', (chunk) => { body += chunk; });
      req.on('end', () => {
        try {
          const { publish } = JSON.parse(body);
          if (!publish.every((kid) => KEYS[kid])) throw new Error('unknown kid');
          handle = new Provider(issuer, configuration(publish)).callback();
          res.end('{}');
        } catch (e) {
          res.statusCode = 400;
          res.end(JSON.stringify({ error: String(e) }));
        }
      });
      return;
    }
    const endpoint = path.startsWith('/interaction/') ? '/interaction' : path;
    hits[endpoint] = (hits[endpoint] ?? 0) + 1;
    handle(req, res);
  });
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});
