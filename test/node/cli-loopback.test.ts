/**
 * Issue 11, finding 12: credctl sends admin credentials over plain http only to this machine, and
 * "this machine" means a literal loopback address or `localhost` itself, never a name under
 * `.localhost` (the system resolver may pass it to DNS).
 *
 * The built bundle runs as a child process. So that `evil.localhost` resolves at all here (it does
 * not on this machine, and elsewhere it would be DNS's answer), the child is started with a small
 * preload that answers `*.localhost` with 127.0.0.1, the way a hostile or careless DNS server
 * could: a recording listener on 127.0.0.1 then shows exactly what the CLI sent to that name.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isLoopbackUrl } from '../../src/admin-api.js';
import { isLoopbackIssuer } from '../../src/issuer/client-ip.js';
import { buildCli, type CliRun, runProcess } from './cli-process.js';

const ADMIN_TOKEN = 'finding-12-admin-token-0123456789abcdef';

const dir = mkdtempSync(join(tmpdir(), 'credctl-loopback-'));
let bundle: string;
let preload: string;
let server: Server;
let port: number;
const seen: { url: string; headers: IncomingHttpHeaders }[] = [];

beforeAll(async () => {
  preload = join(dir, 'localhost-names-resolve.mjs');
  // A resolver that answers every *.localhost name with 127.0.0.1 (Node's net and fetch look the
  // host up through dns.lookup at connect time).
  writeFileSync(
    preload,
    `import dns from 'node:dns';
const lookup = dns.lookup;
dns.lookup = function (host, options, callback) {
  if (typeof options === 'function') { callback = options; options = {}; }
  if (typeof host === 'string' && host.toLowerCase().endsWith('.localhost')) {
    if (options && options.all) return process.nextTick(callback, null, [{ address: '127.0.0.1', family: 4 }]);
    return process.nextTick(callback, null, '127.0.0.1', 4);
  }
  return lookup.call(this, host, options, callback);
};
`,
  );
  server = createServer((req, res) => {
    seen.push({ url: req.url ?? '', headers: req.headers });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(req.url === '/.well-known/jwks.json' ? '{"keys":[]}' : '{"keys":[],"sandboxes":[]}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
  bundle = await buildCli(join(dir, 'cli'));
}, 60_000);
afterAll(async () => {
  await new Promise<void>((r) => {
    server?.closeAllConnections();
    server?.close(() => r());
  });
  rmSync(dir, { recursive: true, force: true });
});

function credctl(args: string[]): Promise<CliRun> {
  return runProcess(process.execPath, [bundle, ...args], {
    cwd: dir,
    env: { ADMIN_TOKEN, NODE_OPTIONS: `--import ${pathToFileURL(preload).href}` },
  });
}

async function anyToken(): Promise<string> {
  const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
  return new SignJWT({ sub: 'x' })
    .setProtectedHeader({ alg: 'EdDSA', kid: 'k1', typ: 'at+jwt' })
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(privateKey);
}

describe('finding 12: only literal loopback addresses and localhost itself are loopback', () => {
  it('finding 12: isLoopbackUrl is 127.0.0.0/8, [::1] and localhost; *.localhost, localhost. and look-alikes are not; the Worker (DEV_USER) agrees', () => {
    const loopback = [
      'http://127.0.0.1:8787',
      'http://127.255.3.4',
      'http://127.1',
      'http://localhost:8787',
      'http://LOCALHOST',
      'http://[::1]:8787',
      'http://[0:0:0:0:0:0:0:1]',
    ];
    const other = [
      'http://evil.localhost:8787',
      'http://a.b.localhost',
      'http://localhost.',
      'http://localhost.evil.example',
      'http://127.0.0.1.nip.io',
      'http://128.0.0.1',
      'http://0.0.0.0',
      'http://[::]',
      'http://[::ffff:127.0.0.1]',
      'http://10.0.0.1',
    ];
    expect(loopback.filter((u) => !isLoopbackUrl(new URL(u)))).toEqual([]);
    expect(other.filter((u) => isLoopbackUrl(new URL(u)))).toEqual([]);
    // The same rule as text (the Worker's ISSUER), and the Worker's own name for it.
    expect(loopback.filter((u) => !isLoopbackUrl(u) || !isLoopbackIssuer(u))).toEqual([]);
    expect([...other, 'not a url', ''].filter((u) => isLoopbackUrl(u) || isLoopbackIssuer(u))).toEqual([]);
  });

  it('finding 12: the name does resolve to the listener in the child (public calls go there, without credentials)', async () => {
    seen.length = 0;
    const r = await credctl(['token', 'inspect', await anyToken(), '--json', '--issuer', `http://evil.localhost:${port}`]);
    // The JWKS is public and was fetched from the listener; the admin key listing (which would
    // carry the token) was never requested.
    expect(seen.map((s) => s.url)).toEqual(['/.well-known/jwks.json']);
    expect(seen[0]!.headers.authorization).toBeUndefined();
    expect(r.stdout + r.stderr).not.toContain(ADMIN_TOKEN);
  });

  it('finding 12: credctl status --issuer http://evil.localhost with ADMIN_TOKEN set exits 2 with the plain-http refusal and sends nothing', async () => {
    seen.length = 0;
    const r = await credctl(['status', '--issuer', `http://evil.localhost:${port}`]);
    expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({
      code: 2,
      stdout: '',
      stderr: `credctl: refusing to send admin credentials over plain http to evil.localhost:${port}; use an https issuer URL\n`,
    });
    expect(seen).toEqual([]);
  });

  it('finding 12: a literal loopback address and localhost still get the admin token (the local stack works)', async () => {
    for (const host of ['127.0.0.1', 'localhost']) {
      seen.length = 0;
      const r = await credctl(['keys', 'list', '--json', '--issuer', `http://${host}:${port}`]);
      expect([host, r.code, seen.map((s) => s.headers.authorization)]).toEqual([host, 0, [`Bearer ${ADMIN_TOKEN}`]]);
    }
  });
});
