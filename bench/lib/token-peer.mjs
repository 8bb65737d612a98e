#!/usr/bin/env node
// The token bench's peer (bench/README.md, "The peer"): oidc-provider as a client_credentials
// endpoint with private_key_jwt (EdDSA) client authentication and EdDSA-signed JWT access tokens,
// with `--clients N` static clients, each with its own Ed25519 key, so it can be loaded the way our
// many-sandbox mode loads ours. oidc-provider itself comes from the shared harness's `npm ci` in the
// bench's temporary folder (`--harness DIR`); nothing of it is in the project.
//
// Prints one JSON line ({"ready":true,...}) on stdout once listening; stops on SIGTERM/SIGINT.
//   --store default  the built-in in-memory adapter: an LRU of 1,000 entries (two generations), so
//                    a client assertion's jti is forgotten after ~1,000-2,000 later requests.
//   --store large    the same adapter code over a 10M-entry LRU: a jti leaves only on expiry.
import { generateKeyPairSync } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    harness: { type: 'string' },
    port: { type: 'string', default: '3000' },
    clients: { type: 'string', default: '1' },
    'clients-out': { type: 'string' },
    store: { type: 'string', default: 'default' },
  },
});
if (!args.harness || !args['clients-out']) throw new Error('--harness and --clients-out are required');
if (!['default', 'large'].includes(args.store)) throw new Error('--store must be default or large');
const count = Number(args.clients);
if (!Number.isInteger(count) || count < 1) throw new Error('--clients must be a positive integer');

// oidc-provider has no exports map: its adapter and LRU are reachable by path (not public API).
const req = createRequire(path.join(path.resolve(args.harness), 'package.json'));
const load = async (spec) => (await import(pathToFileURL(req.resolve(spec)).href)).default;
const mod = await import(pathToFileURL(req.resolve('oidc-provider')).href);
const Provider = mod.default;
const { errors } = mod;
const MemoryAdapter = await load('oidc-provider/lib/adapters/memory_adapter.js');
const LRU = await load('oidc-provider/lib/helpers/lru.js');

/** Audience of the issued access tokens: one API, as ours issues for one gateway. */
const RESOURCE = 'https://api.bench.example/';
/** oidc-provider's default clock tolerance, kept. */
const CLOCK_TOLERANCE_S = 15;
/** The access tokens' lifetime (ours: AGENT_TOKEN_TTL; the figure does not change the cost). */
const ACCESS_TOKEN_TTL_S = 300;
const LARGE_STORE_ENTRIES = 10_000_000;
const issuer = `http://127.0.0.1:${args.port}`;

/** Fresh Ed25519 keys on every start: nothing is kept. */
function ed25519(kid) {
  const { privateKey } = generateKeyPairSync('ed25519');
  const priv = { ...privateKey.export({ format: 'jwk' }), kid, alg: 'EdDSA', use: 'sig' };
  const { d: _d, ...pub } = priv;
  return { priv, pub };
}
const serverKey = ed25519('as-ed25519-1');
const clients = Array.from({ length: count }, (_, i) => {
  const id = count === 1 ? 'bench-agent' : `bench-agent-${String(i).padStart(4, '0')}`;
  return { id, key: ed25519(`${id}-ed25519-1`) };
});

const largeStore = new LRU({ maxSize: LARGE_STORE_ENTRIES });
const provider = new Provider(issuer, {
  ...(args.store === 'large' && { adapter: (model) => new MemoryAdapter(model, largeStore, CLOCK_TOLERANCE_S) }),
  clockTolerance: CLOCK_TOLERANCE_S,
  clients: clients.map(({ id, key }) => ({
    client_id: id,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'EdDSA',
    id_token_signed_response_alg: 'EdDSA',
    jwks: { keys: [key.pub] },
  })),
  jwks: { keys: [serverKey.priv] },
  enabledJWA: { clientAuthSigningAlgValues: ['EdDSA', 'Ed25519'], idTokenSigningAlgValues: ['EdDSA', 'Ed25519'] },
  clientDefaults: { id_token_signed_response_alg: 'EdDSA' },
  routes: { token: '/oauth/token' },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // A client_credentials request names no resource: default to the one API, or oidc-provider
      // would issue an opaque, stored token instead of a JWT.
      defaultResource: async () => RESOURCE,
      getResourceServerInfo: async (_ctx, resource) => {
        if (resource !== RESOURCE) throw new errors.InvalidTarget();
        return {
          scope: 'api',
          audience: RESOURCE,
          accessTokenTTL: ACCESS_TOKEN_TTL_S,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'EdDSA' } },
        };
      },
    },
  },
});
provider.on('server_error', (_ctx, err) => console.error('server_error', err));

await writeFile(args['clients-out'], `${JSON.stringify(clients.map(({ id, key }) => ({ client_id: id, jwk: key.priv })))}\n`, {
  mode: 0o600,
});

const server = createServer(provider.callback());
server.listen(Number(args.port), '127.0.0.1', () => {
  console.log(
    JSON.stringify({
      ready: true,
      pid: process.pid,
      issuer,
      token_endpoint: `${issuer}/oauth/token`,
      jwks_uri: `${issuer}/jwks`,
      aud: issuer,
      clients: count,
      store: args.store,
    }),
  );
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
