/**
 * An independent client: the assertion is built with fast-jwt (not jose), keys are converted with
 * node:crypto, and the issued token is verified with fast-jwt against the published JWKS, and
 * with the OpenSSL command line, a verifier outside the JavaScript world. Runs against the real
 * Worker under wrangler dev.
 */
import { execFileSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, type JsonWebKey, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDecoder, createSigner, createVerifier } from 'fast-jwt';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { TEST_ADMIN_TOKEN } from '../secrets.js';
import { startWorker, type WorkerProcess } from './worker-process.js';

const dir = mkdtempSync(join(tmpdir(), 'issuer-independent-'));
let worker: WorkerProcess;

beforeAll(async () => {
  worker = await startWorker({ persistTo: join(dir, 'state') });
}, 90_000);
afterAll(async () => {
  await worker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

it('a fast-jwt client gets a token, and the token verifies with fast-jwt and OpenSSL against the JWKS', async () => {
  const boot = await fetch(`${worker.url}/api/admin/sandboxes/indep/bootstrap`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${TEST_ADMIN_TOKEN}` },
  });
  expect(boot.status).toBe(200);
  const file = (await boot.json()) as { client_id: string; issuer: string; token_endpoint: string; key: JsonWebKey & { kid: string } };

  const privatePem = createPrivateKey({ key: file.key, format: 'jwk' }).export({ type: 'pkcs8', format: 'pem' }).toString();
  const sign = createSigner({ key: privatePem, algorithm: 'EdDSA', kid: file.key.kid, expiresIn: 60_000 });
  const assertion = sign({ iss: file.client_id, sub: file.client_id, aud: file.issuer, jti: randomUUID() });

  const res = await fetch(file.token_endpoint, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'client_credentials',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: assertion,
    }),
  });
  expect(res.status).toBe(200);
  const { access_token } = (await res.json()) as { access_token: string };

  const decoded = createDecoder({ complete: true })(access_token) as { header: { alg: string; kid: string; typ: string } };
  expect(decoded.header).toMatchObject({ alg: 'EdDSA', typ: 'at+jwt' });

  const jwks = (await (await fetch(`${worker.url}/.well-known/jwks.json`)).json()) as { keys: (JsonWebKey & { kid: string })[] };
  const jwk = jwks.keys.find((k) => k.kid === decoded.header.kid)!;
  expect(jwk).toBeDefined();
  const publicPem = createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'pem' }).toString();
  const verify = createVerifier({ key: publicPem, algorithms: ['EdDSA'], allowedIss: worker.url, allowedAud: 'gateway:indep' });
  const claims = verify(access_token) as Record<string, unknown>;
  expect(claims).toMatchObject({ iss: worker.url, sub: 'indep', aud: 'gateway:indep', client_id: 'indep' });

  // OpenSSL: Ed25519 over the JWS signing input, nothing JavaScript in the loop.
  const [h, p, s] = access_token.split('.') as [string, string, string];
  writeFileSync(join(dir, 'pub.pem'), publicPem);
  writeFileSync(join(dir, 'input'), `${h}.${p}`);
  writeFileSync(join(dir, 'sig'), Buffer.from(s, 'base64url'));
  const out = execFileSync('openssl', [
    'pkeyutl',
    '-verify',
    '-pubin',
    '-inkey',
    join(dir, 'pub.pem'),
    '-rawin',
    '-in',
    join(dir, 'input'),
    '-sigfile',
    join(dir, 'sig'),
  ]).toString();
  expect(out).toMatch(/Signature Verified Successfully/);
  // And a tampered token fails under OpenSSL.
  writeFileSync(join(dir, 'input'), `${h}.${p}x`);
  expect(() =>
    execFileSync(
      'openssl',
      ['pkeyutl', '-verify', '-pubin', '-inkey', join(dir, 'pub.pem'), '-rawin', '-in', join(dir, 'input'), '-sigfile', join(dir, 'sig')],
      { stdio: 'pipe' },
    ),
  ).toThrow();
}, 60_000);
