/**
 * Issue 12 F: what the agent believes of the files a previous run left. Real files in a real
 * directory, read back by the agent's own readBack; the refresher is not started (no issuer), so
 * what /healthz would say comes from the files alone.
 */
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterAll, describe, expect, it } from 'vitest';
import { prepareKeys } from '../../container/agent/client.js';
import { readBack } from '../../container/agent/files.js';
import { Refresher } from '../../container/agent/refresher.js';
import { credentialsVersion, MAX_TOKEN_LIFETIME_S } from '../../container/agent/restore.js';
import type { BootstrapFile } from '../../src/admin-api.js';
import { credentialsVersion as issuerCredentialsVersion } from '../../src/issuer/credentials.js';

const root = mkdtempSync(join(tmpdir(), 'agent-restore-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const values = { GATEWAY_TOKEN: 'gateway-value', ANTHROPIC_API_KEY: 'api-value' };
const version = credentialsVersion(values);

async function token(claims: Record<string, unknown>, lifetimeS = 20, iat = Math.floor(Date.now() / 1000)): Promise<string> {
  const { privateKey } = await generateKeyPair('EdDSA');
  return new SignJWT({ jti: 'saved', ...claims })
    .setProtectedHeader({ alg: 'EdDSA', kid: 'k1' })
    .setIssuedAt(iat)
    .setExpirationTime(iat + lifetimeS)
    .sign(privateKey);
}

/** A directory as a previous run could have left it. */
function dirWith(name: string, files: { token?: string; credentials?: unknown; state?: string }): string {
  const dir = join(root, name);
  mkdirSync(dir);
  if (files.token !== undefined) writeFileSync(join(dir, 'token'), files.token);
  if (files.credentials !== undefined)
    writeFileSync(
      join(dir, 'credentials.json'),
      typeof files.credentials === 'string' ? files.credentials : JSON.stringify(files.credentials),
    );
  if (files.state !== undefined) writeFileSync(join(dir, 'state.json'), files.state);
  return dir;
}

async function restored(dir: string) {
  const { privateKey } = await generateKeyPair('EdDSA', { extractable: true });
  const file: BootstrapFile = {
    client_id: 'sb',
    issuer: 'http://issuer.test',
    token_endpoint: 'http://issuer.test/oauth/token',
    key: { ...(await exportJWK(privateKey)), kid: 'b' },
  };
  const logs: { event: string; fields: Record<string, unknown> }[] = [];
  const r = new Refresher(
    { file, endpoint: file.token_endpoint, keys: await prepareKeys(file) },
    {
      now: Date.now,
      random: Math.random,
      sleep: async () => undefined,
      post: async () => {
        throw new Error('no issuer in these tests');
      },
      log: (_level, event, fields = {}) => logs.push({ event, fields }),
      store: { writeToken: async () => undefined, writeCredentials: async () => undefined, writeState: async () => undefined },
    },
  );
  const started = Date.now();
  r.restore(await readBack(dir));
  const unusable = logs.filter((l) => l.event === 'file_unusable').map((l) => l.fields);
  return { r, logs, unusable, started };
}

describe('credentials version', () => {
  it('the agent computes it exactly as the issuer does', async () => {
    for (const v of [values, { GATEWAY_TOKEN: 'x' }, { B: '1', A: '2', Z_9: 'ü €' }, {}]) {
      expect(credentialsVersion(v)).toBe(await issuerCredentialsVersion(v));
    }
  });
});

describe('restore at start', () => {
  it('failure F: a token that is not a JWT is unusable, whatever state.json claims: 503, one line naming the file, never its content', async () => {
    const nowS = Math.floor(Date.now() / 1000);
    const dir = dirWith('not-a-jwt', {
      token: 'not-a-jwt\n',
      credentials: { version, values },
      state: JSON.stringify({ expires_at: nowS + 86_391, issued_at: nowS, kid: 'forged' }),
    });
    const { r, unusable, logs } = await restored(dir);
    expect(r.healthStatus()).toBe('no_token');
    expect(r.expiresInMs()).toBeUndefined();
    expect(unusable).toEqual([{ file: 'token', path: join(dir, 'token'), reason: 'not a JWT', action: 'refreshing now' }]);
    expect(JSON.stringify(logs)).not.toContain('not-a-jwt\\n');
    expect(r.nextAt).toBeLessThanOrEqual(Date.now()); // refreshes at once
  });

  it('failure F: expiry comes from the token (its lifetime from when the file was written), not from a forged state.json', async () => {
    const t = await token({ cred_ver: version }, 20);
    const nowS = Math.floor(Date.now() / 1000);
    const dir = dirWith('forged-state', {
      token: `${t}\n`,
      credentials: { version, values },
      state: JSON.stringify({ expires_at: nowS + 86_391, issued_at: nowS }),
    });
    const { r, unusable } = await restored(dir);
    expect(unusable).toEqual([]);
    expect(r.healthStatus()).toBe('ok');
    expect(r.expiresInMs()!).toBeLessThanOrEqual(20_000);
    expect(r.expiresInMs()!).toBeGreaterThan(15_000);

    // The same token, written 30 s ago: its 20 s are over, whatever exp says against this clock.
    const old = new Date(Date.now() - 30_000);
    utimesSync(join(dir, 'token'), old, old);
    const later = await restored(dir);
    expect(later.r.healthStatus()).toBe('no_token');
    expect(later.unusable).toMatchObject([{ file: 'token', reason: expect.stringMatching(/^expired \d+ s ago$/) }]);
  });

  it('failure F: a token claiming a longer life than the issuer gives is not believed', async () => {
    const t = await token({}, MAX_TOKEN_LIFETIME_S + 1);
    const { r, unusable } = await restored(dirWith('long-life', { token: t }));
    expect(r.healthStatus()).toBe('no_token');
    expect(unusable[0]).toMatchObject({ file: 'token', reason: expect.stringContaining('lifetime') });
  });

  it('failure F: a truncated state.json does not discard a valid token', async () => {
    const t = await token({ cred_ver: version }, 20);
    const dir = dirWith('truncated-state', { token: t, credentials: { version, values }, state: '{"expires_at": 18' });
    const { r, unusable } = await restored(dir);
    expect(r.healthStatus()).toBe('ok');
    expect(r.current?.jti).toBe('saved');
    expect(unusable).toMatchObject([{ file: 'state.json', path: join(dir, 'state.json'), reason: expect.stringContaining('truncated') }]);
  });

  const broken: [string, unknown, RegExp][] = [
    ['the right version and "values":{}', { version, values: {} }, /do not match version/],
    ['a value emptied', { version, values: { ...values, ANTHROPIC_API_KEY: '' } }, /empty values for ANTHROPIC_API_KEY/],
    ['a name missing', { version, values: { GATEWAY_TOKEN: values.GATEWAY_TOKEN } }, /do not match version/],
    ['a value changed', { version, values: { ...values, GATEWAY_TOKEN: 'edited' } }, /do not match version/],
    [
      'another version than the token',
      { version: credentialsVersion({ GATEWAY_TOKEN: 'old' }), values: { GATEWAY_TOKEN: 'old' } },
      /not the token's/,
    ],
    ['truncated', '{"version": "abc", "val', /not a JSON object/],
  ];
  for (const [what, creds, reason] of broken) {
    it(`failure F: credentials.json with ${what} is unusable: /healthz 503 until the refresh rewrites it, one line naming the file`, async () => {
      const t = await token({ cred_ver: version }, 20);
      const dir = dirWith(`creds-${what.replace(/\W+/g, '-')}`, { token: t, credentials: creds, state: '{}' });
      const { r, unusable, logs } = await restored(dir);
      expect(r.healthStatus()).toBe('credentials_unusable');
      expect(r.credentials).toBeUndefined(); // so the first refresh writes it, even for the same version
      expect(unusable).toHaveLength(1);
      expect(unusable[0]).toMatchObject({
        file: 'credentials.json',
        path: join(dir, 'credentials.json'),
        reason: expect.stringMatching(reason),
      });
      expect(JSON.stringify(logs)).not.toMatch(/gateway-value|api-value|edited/);
    });
  }

  it('failure F: a token that carries credentials with no credentials.json beside it is reported', async () => {
    const t = await token({ cred_ver: version }, 20);
    const dir = dirWith('no-creds', { token: t });
    const { r, unusable } = await restored(dir);
    expect(r.healthStatus()).toBe('credentials_unusable');
    expect(unusable).toMatchObject([
      { file: 'credentials.json', path: join(dir, 'credentials.json'), reason: expect.stringContaining('missing') },
    ]);
  });
});
