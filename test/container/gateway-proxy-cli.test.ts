/**
 * The proxy as a program: flags and their environment twins, one clear line and exit 2 for a bad
 * value, `npm run gateway-proxy` from source, and the esbuild bundle (ESM, platform node, as
 * `npm run build:container` makes it) forwarding a request and stopping cleanly on SIGTERM.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseProxyConfig, UsageError } from '../../container/lib/proxy/config.js';
import { freePort, ROOT } from '../node/worker-process.js';
import {
  AUDIENCE,
  ISSUER,
  type JwksServer,
  makeKey,
  proxyFlags,
  startJwksServer,
  startUpstream,
  type TestKey,
  token,
  type Upstream,
  writeCredentials,
} from './gateway-proxy-fixtures.js';

const run = promisify(execFile);
const SOURCE = ['--import', `${ROOT}scripts/register-ts.mjs`, `${ROOT}container/gateway-proxy.ts`];

let dir: string;
let key: TestKey;
let jwks: JwksServer;
let upstream: Upstream;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gateway-proxy-cli-'));
  key = await makeKey();
  jwks = await startJwksServer([key.publicJwk]);
  upstream = await startUpstream();
  writeCredentials(dir, { GATEWAY_TOKEN: 'gw-cli-value' }, 'v1');
});
afterAll(async () => {
  await upstream?.close();
  await jwks?.close();
  rmSync(dir, { recursive: true, force: true });
});

function flags(port: number): string[] {
  return proxyFlags({ jwksUrl: jwks.url, upstreamUrl: upstream.url, dir, port });
}

describe('flags', () => {
  const base = {
    JWKS_URL: 'http://127.0.0.1:1/jwks.json',
    EXPECTED_ISSUER: ISSUER,
    EXPECTED_AUDIENCE: AUDIENCE,
    UPSTREAM_URL: 'http://127.0.0.1:18789',
    CREDENTIALS_FILE: '/run/creds/credentials.json',
  };

  it('each flag has an environment twin; defaults: port 8789 on 127.0.0.1, GATEWAY_TOKEN, 30 s skew; a flag beats its twin', () => {
    expect(parseProxyConfig([], base)).toMatchObject({
      port: 8789,
      host: '127.0.0.1',
      upstreamTokenName: 'GATEWAY_TOKEN',
      clockSkew: 30,
      audience: AUDIENCE,
    });
    const c = parseProxyConfig(['--port', '9000'], {
      ...base,
      PROXY_PORT: '9100',
      UPSTREAM_TOKEN_NAME: 'OTHER_TOKEN',
      CLOCK_SKEW_SECONDS: '5',
      PROXY_HOST: '0.0.0.0',
    });
    expect(c).toMatchObject({ port: 9000, upstreamTokenName: 'OTHER_TOKEN', clockSkew: 5, host: '0.0.0.0' });
  });

  it('refuses bad values with a message naming the flag', () => {
    const bad: [string[], Record<string, string>, RegExp][] = [
      [[], { ...base, JWKS_URL: '' }, /^--jwks \(or JWKS_URL\) is required$/],
      [['--jwks', 'ftp://x/jwks'], base, /^--jwks: /],
      [['--upstream', 'not a url'], base, /^--upstream: /],
      // The issuer is the Worker's URL: its scheme and host are the X-Forwarded-Proto and -Host upstream.
      [['--issuer', 'issuer.test'], base, /^--issuer: must be an absolute http\(s\) URL/],
      [['--issuer', 'ftp://issuer.test'], base, /^--issuer: must be an http\(s\) URL/],
      [['--upstream', 'http://127.0.0.1:1/?q=1'], base, /^--upstream: must not have a query/],
      [['--port', '70000'], base, /^--port: /],
      [['--port', '80x'], base, /^--port: /],
      [['--clock-skew', '301'], base, /^--clock-skew: /],
      [['--clock-skew=-1'], base, /^--clock-skew: /],
      [['--upstream-token', 'lower-case'], base, /^--upstream-token: /],
      [['--bogus'], base, /bogus/],
      [[], { ...base, EXPECTED_AUDIENCE: '' }, /^--audience \(or EXPECTED_AUDIENCE\) is required$/],
    ];
    for (const [argv, env, message] of bad) {
      let err: unknown;
      try {
        parseProxyConfig(argv, env);
      } catch (e) {
        err = e;
      }
      expect(err, argv.join(' ')).toBeInstanceOf(UsageError);
      expect((err as Error).message).toMatch(message);
    }
  });

  it('the program prints one line and exits 2 on a bad flag', async () => {
    const args = [...SOURCE, ...flags(1).slice(0, -2), '--port', 'nope'];
    const err = (await run(process.execPath, args, { cwd: ROOT, env: { PATH: process.env.PATH ?? '' } }).catch((e) => e)) as {
      code: number;
      stderr: string;
      stdout: string;
    };
    expect(err.code).toBe(2);
    expect(err.stderr).toBe('gateway-proxy: error: --port: must be a port number (0-65535)\n');
    expect(err.stdout).toBe('');
  });

  it('npm run gateway-proxy -- --help prints the usage and exits 0', async () => {
    const { stdout } = await run('npm', ['run', '--silent', 'gateway-proxy', '--', '--help'], { cwd: ROOT });
    expect(stdout).toContain('usage: gateway-proxy');
    for (const twin of [
      'JWKS_URL',
      'EXPECTED_ISSUER',
      'EXPECTED_AUDIENCE',
      'UPSTREAM_URL',
      'CREDENTIALS_FILE',
      'UPSTREAM_TOKEN_NAME',
      'PROXY_PORT',
      'CLOCK_SKEW_SECONDS',
    ]) {
      expect(stdout).toContain(twin);
    }
  });
});

async function runProxy(
  args: string[],
): Promise<{ child: ChildProcess; url: string; out: () => string; stop: () => Promise<number | null> }> {
  const port = await freePort();
  const child = spawn(process.execPath, [...args, ...flags(port)], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const url = `http://127.0.0.1:${port}`;
  const stop = () =>
    new Promise<number | null>((resolve) => {
      if (child.exitCode !== null) return resolve(child.exitCode);
      const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
      child.once('exit', (code) => {
        clearTimeout(t);
        resolve(code);
      });
      child.kill('SIGTERM');
    });
  for (let i = 0; i < 100; i++) {
    if (out.includes('"proxy_listening"')) return { child, url, out: () => out, stop };
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await stop();
  throw new Error(`proxy did not start:\n${out}`);
}

async function exercise(p: { url: string; out: () => string; stop: () => Promise<number | null> }): Promise<void> {
  try {
    const t = await token(key, { claims: { sub: 'dave' } });
    const res = await fetch(`${p.url}/x`, { headers: { Authorization: `Bearer ${t}` } });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ authorization: 'Bearer gw-cli-value', user: 'dave' });
    const bad = await fetch(`${p.url}/x`, { headers: { Authorization: `Bearer ${t}x` } });
    expect(bad.status).toBe(401);
    const health = await fetch(`${p.url}/healthz`);
    expect(health.status).toBe(200);
    expect(p.out()).not.toContain(t.split('.')[2]!);
    expect(p.out()).not.toContain('gw-cli-value');
  } finally {
    expect(await p.stop()).toBe(0);
  }
  expect(p.out()).toContain('"proxy_stopping"');
}

it('runs from source (what npm run gateway-proxy runs) and stops with exit 0 on SIGTERM', async () => {
  await exercise(await runProxy(SOURCE));
}, 30_000);

it('runs as an esbuild bundle (ESM, platform node) with no other source files beside it', async () => {
  const out = join(dir, 'bundle');
  // Exactly what `npm run build:container` does, into a folder of this test's own.
  await promisify(execFile)(process.execPath, [`${ROOT}scripts/build-container.mjs`, '--outdir', out]);
  await exercise(await runProxy([join(out, 'gateway-proxy.mjs')]));
}, 30_000);
