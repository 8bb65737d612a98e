/**
 * src/admin-api.ts, the contract of everything that crosses a process boundary: the admin paths,
 * the bootstrap file check, the credentials version formula (the same with Node's SHA-256 as with
 * the Worker's WebCrypto one), the ports (start.sh's shell defaults included) and the dotenv rule
 * the local stack and the CLI read .dev.vars by. The loopback rule has its own file
 * (cli-loopback.test.ts).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { credentialsVersion as agentCredentialsVersion } from '../../container/agent/restore.js';
import {
  ADMIN_PREFIX,
  ADMIN_ROUTES,
  adminPath,
  CONTAINER_PORTS,
  checkBootstrapFile,
  credentialsVersionFromDigest,
  credentialsVersionInput,
  dotenvEntry,
  JWKS_PATH,
  LOCAL_ISSUER,
  localStackPorts,
  parseDotenv,
  TOKEN_PATH,
} from '../../src/admin-api.js';
import { ROOT } from './worker-process.js';

// Imported by path: the Worker's module is typed against the Workers types, which this (Node)
// project's type check does not load; at run time it needs only WebCrypto and zod.
const workerCredentials = () =>
  import(/* @vite-ignore */ `${ROOT}src/issuer/credentials.ts`) as Promise<{
    credentialsVersion(values: Record<string, string>): Promise<string>;
  }>;

describe('paths', () => {
  it('the admin routes, filled in and with their queries, as the API has them', () => {
    expect([ADMIN_PREFIX, TOKEN_PATH, JWKS_PATH]).toEqual(['/api/admin', '/oauth/token', '/.well-known/jwks.json']);
    const kid = '-'.repeat(43);
    expect([
      adminPath('listKeys'),
      adminPath('rotateKeys', {}, new URLSearchParams({ force: 'false' })),
      adminPath('revokeKey', { kid }),
      adminPath('listSandboxes', {}, new URLSearchParams()),
      adminPath('listSandboxes', {}, new URLSearchParams({ limit: '5', cursor: 'abc' })),
      adminPath('sandboxStatus', { id: 'sb-1' }),
      adminPath('bootstrap', { id: 'sb-1' }),
      adminPath('refreshSandbox', { id: 'sb-1' }),
      adminPath('restartGateway'),
      adminPath('audit', {}, new URLSearchParams({ sandbox: 'main', limit: '50' })),
    ]).toEqual([
      '/keys',
      '/keys/rotate?force=false',
      `/keys/${kid}/revoke`,
      '/sandboxes',
      '/sandboxes?limit=5&cursor=abc',
      '/sandboxes/sb-1',
      '/sandboxes/sb-1/bootstrap',
      '/sandboxes/sb-1/refresh',
      '/gateway/restart',
      '/audit?sandbox=main&limit=50',
    ]);
    expect(Object.values(ADMIN_ROUTES).map((r) => r.method)).toEqual([
      'GET',
      'POST',
      'POST',
      'GET',
      'GET',
      'DELETE',
      'POST',
      'POST',
      'POST',
      'GET',
    ]);
    // A parameter is one path segment, whatever it holds; a missing one is the caller's bug.
    expect(adminPath('sandboxStatus', { id: '../keys' })).toBe('/sandboxes/..%2Fkeys');
    expect(() => adminPath('bootstrap')).toThrow(/no value for :id/);
  });
});

describe('checkBootstrapFile', () => {
  const key = { kty: 'OKP', crv: 'Ed25519', x: 'eA', d: 'ZA', kid: 'k1' };
  const good = { client_id: 'sb-1', issuer: 'https://issuer.example', token_endpoint: 'https://issuer.example/oauth/token', key };

  it('takes a bootstrap file as the Worker writes it', () => {
    expect(checkBootstrapFile(good)).toEqual({ ok: true, file: good });
    expect(checkBootstrapFile({ ...good, issuer: 'http://127.0.0.1:8787' }).ok).toBe(true);
  });

  it.each([
    [null, 'file', 'not a JSON object'],
    [[good], 'file', 'not a JSON object'],
    ['text', 'file', 'not a JSON object'],
    [{ ...good, client_id: '' }, 'client_id', 'client_id is missing'],
    [{ ...good, client_id: 7 }, 'client_id', 'client_id is missing'],
    [{ ...good, issuer: 'ftp://issuer.example' }, 'issuer', 'issuer is not an http(s) URL'],
    [{ ...good, issuer: undefined }, 'issuer', 'issuer is not an http(s) URL'],
    [{ ...good, token_endpoint: 'not a url' }, 'token_endpoint', 'token_endpoint is not an http(s) URL'],
    [{ ...good, key: { ...key, d: undefined } }, 'key', 'key is not a private Ed25519 JWK'],
    [{ ...good, key: { ...key, crv: 'X25519' } }, 'key', 'key is not a private Ed25519 JWK'],
    [{ ...good, key: [key] }, 'key', 'key is not a private Ed25519 JWK'],
    [{ ...good, key: undefined }, 'key', 'key is not a private Ed25519 JWK'],
  ])('%j: the wrong field is named (%s)', (value, field, problem) => {
    expect(checkBootstrapFile(value)).toEqual({ ok: false, field, problem });
  });
});

describe('the credentials version', () => {
  const values = { PROVIDER_API_KEY: 'sentinel.x.y', GATEWAY_TOKEN: 'gateway-token-value', Ä: 'ü' };

  it('is the first 96 bits of SHA-256 over the sorted names and values, base64url: pinned, and the same in the agent and the Worker', async () => {
    expect(credentialsVersionInput(values)).toBe(
      'credentials-version:v1:[["GATEWAY_TOKEN","gateway-token-value"],["PROVIDER_API_KEY","sentinel.x.y"],["Ä","ü"]]',
    );
    const node = credentialsVersionFromDigest(createHash('sha256').update(credentialsVersionInput(values)).digest());
    const web = credentialsVersionFromDigest(
      new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(credentialsVersionInput(values)))),
    );
    const { credentialsVersion: worker } = await workerCredentials();
    expect([node, web, agentCredentialsVersion(values), await worker(values)]).toEqual([
      'P3q6X9iYyW5kfRYC',
      'P3q6X9iYyW5kfRYC',
      'P3q6X9iYyW5kfRYC',
      'P3q6X9iYyW5kfRYC',
    ]);
    expect([agentCredentialsVersion({}), await worker({})]).toEqual(['SNL-px8ehR8Z8zNN', 'SNL-px8ehR8Z8zNN']);
    expect(() => credentialsVersionFromDigest(new Uint8Array(12))).toThrow(/SHA-256/);
  });
});

describe('ports', () => {
  it('the container ports and the local stack layout', () => {
    expect(CONTAINER_PORTS).toEqual({ agent: 8788, proxy: 8789, gateway: 18789 });
    expect(localStackPorts()).toEqual({ issuer: 8787, agent: 8788, proxy: 8789, gateway: 8790, modelProvider: 8791, egressHop: 8792 });
    expect(localStackPorts(20_000)).toEqual({
      issuer: 20_000,
      agent: 20_001,
      proxy: 20_002,
      gateway: 20_003,
      modelProvider: 20_004,
      egressHop: 20_005,
    });
    expect(LOCAL_ISSUER).toBe('http://127.0.0.1:8787');
  });

  it("start.sh's shell defaults are the contract's container ports", () => {
    const script = readFileSync(`${ROOT}container/start.sh`, 'utf8');
    const shellDefault = (name: string) => Number(new RegExp(`^${name}=\\$\\{${name}:-(\\d+)\\}$`, 'm').exec(script)?.[1]);
    expect({ agent: shellDefault('AGENT_PORT'), proxy: shellDefault('PROXY_PORT'), gateway: shellDefault('GATEWAY_PORT') }).toEqual(
      CONTAINER_PORTS,
    );
  });
});

describe('dotenv (.dev.vars)', () => {
  it('NAME=VALUE, export, blanks, one pair of matching quotes; comments and junk skipped; the last of a name wins', () => {
    const text = [
      '# a comment',
      'PLAIN=value',
      'SINGLE=\'{"a":1}\'',
      'DOUBLE="two words"',
      'MIXED=\'not closed"',
      'export EXPORTED=yes',
      '  SPACED = around  ',
      'EMPTY=',
      'TWICE=first',
      'TWICE=second',
      'lower_case=ok',
      '1BAD=no',
      'NO_EQUALS',
      '',
    ].join('\r\n');
    expect(parseDotenv(text)).toEqual({
      PLAIN: 'value',
      SINGLE: '{"a":1}',
      DOUBLE: 'two words',
      MIXED: '\'not closed"',
      EXPORTED: 'yes',
      SPACED: 'around',
      EMPTY: '',
      TWICE: 'second',
      lower_case: 'ok',
    });
    expect([dotenvEntry('# X=1'), dotenvEntry('X=1'), dotenvEntry("X=''")]).toEqual([
      undefined,
      { name: 'X', value: '1' },
      { name: 'X', value: '' },
    ]);
  });

  it('reads keys.example as the local stack writes .dev.vars from it', () => {
    const vars = parseDotenv(readFileSync(`${ROOT}keys.example`, 'utf8'));
    expect(vars.ISSUER).toBe(LOCAL_ISSUER);
    expect(JSON.parse(vars.CREDENTIALS!)).toMatchObject({ PROVIDER_API_KEY: { secret: 'STANDIN_PROVIDER_KEY' } });
    expect(vars.ADMIN_TOKEN).toMatch(/^replace-me/);
  });
});
