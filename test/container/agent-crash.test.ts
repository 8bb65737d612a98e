/**
 * Crash safety (docs/architecture.md, "Agent restart and crash safety"): the agent is SIGKILLed again and again while it writes; every file on
 * disk must always parse and never hold a mix of two versions.
 *
 * The issuer here is a stand-in at the network edge that hands out a new credentials version on
 * every request, with large values (so each write takes long enough to be interrupted) and 1 s
 * tokens (so the agent rewrites its files twice a second). The agent is the real built bundle.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CompactEncrypt, exportJWK, generateKeyPair, importJWK, type JWK, SignJWT } from 'jose';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildContainer, removeBundle, startAgent } from './agent-process.js';

const dir = mkdtempSync(join(tmpdir(), 'agent-crash-'));
const out = join(dir, 'out');
let server: Server;
let url = '';
let version = 0;
/** 200 KiB per value: a write takes milliseconds, not microseconds (and the token stays under the agent's 1 MiB answer limit). */
const VALUE_BYTES = 200 * 1024;

beforeAll(async () => {
  buildContainer();
  const signer = await generateKeyPair('EdDSA');
  server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const params = new URLSearchParams(Buffer.concat(chunks).toString());
    const enc = JSON.parse(params.get('enc_jwk') ?? 'null') as JWK | null;
    version++;
    const v = `v${version}`;
    const claims: Record<string, unknown> = { sub: 'crash', jti: v };
    if (enc) {
      const values = { A: v.padEnd(VALUE_BYTES, v.at(-1)), B: v.padEnd(VALUE_BYTES, v.at(-1)) };
      claims.cred = await new CompactEncrypt(new TextEncoder().encode(JSON.stringify({ version: v, values })))
        .setProtectedHeader({ alg: 'ECDH-ES+A256KW', enc: 'A256GCM' })
        .encrypt(await importJWK(enc, 'ECDH-ES+A256KW'));
      claims.cred_ver = v;
    }
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'EdDSA', kid: 'k' })
      .setIssuedAt(now)
      .setExpirationTime(now + 1)
      .sign(signer.privateKey);
    res
      .writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ access_token: token, token_type: 'Bearer', expires_in: 1 }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const { privateKey } = await generateKeyPair('EdDSA', { extractable: true });
  writeFileSync(
    join(dir, 'boot.json'),
    JSON.stringify({
      client_id: 'crash',
      issuer: url,
      token_endpoint: `${url}/oauth/token`,
      key: { ...(await exportJWK(privateKey)), kid: 'b' },
    }),
  );
}, 60_000);

afterAll(async () => {
  await new Promise((r) => server?.close(r));
  rmSync(dir, { recursive: true, force: true });
  removeBundle();
});

/** Every file present parses and is internally of one version. */
function checkFiles(): { versions: string[]; temps: number } {
  const names = existsSync(out) ? readdirSync(out) : [];
  const versions: string[] = [];
  for (const name of names) {
    if (name.startsWith('.tmp-')) continue;
    const text = readFileSync(join(out, name), 'utf8');
    if (name === 'credentials.json') {
      const c = JSON.parse(text) as { version: string; values: Record<string, string> };
      const mark = c.version.at(-1)!;
      for (const value of Object.values(c.values)) {
        expect(value.length).toBe(VALUE_BYTES);
        expect(value.startsWith(c.version)).toBe(true);
        expect(value.endsWith(mark.repeat(16))).toBe(true);
      }
      versions.push(c.version);
    } else if (name === 'token') {
      const parts = text.trim().split('.');
      expect(parts).toHaveLength(3);
      const claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString()) as { jti: string };
      expect(claims.jti).toMatch(/^v\d+$/);
    } else if (name === 'state.json') {
      const s = JSON.parse(text) as Record<string, unknown>;
      expect(typeof s).toBe('object');
    } else {
      throw new Error(`unexpected file ${name}`);
    }
  }
  return { versions, temps: names.filter((n) => n.startsWith('.tmp-')).length };
}

/** Rounds always run; more (up to MAX_ROUNDS) while a loaded machine has not yet shown enough versions or a cut write. */
const ROUNDS = 30;
const MAX_ROUNDS = 60;

it('files always parse and never mix versions, across 30 or more SIGKILLs mid-write', async () => {
  let temps = 0;
  const seen = new Set<string>();
  for (let round = 0; round < ROUNDS || ((seen.size < 3 || temps === 0) && round < MAX_ROUNDS); round++) {
    const agent = await startAgent(['--bootstrap-key', join(dir, 'boot.json'), '--dir', out, '--issuer', url]);
    if (round % 2 === 0) {
      // Aim: kill the moment a temp file exists, i.e. between a write's start and its rename.
      // Polls without blocking this process, which also serves the agent's token requests.
      const deadline = Date.now() + 3_000;
      while (Date.now() < deadline && !(existsSync(out) && readdirSync(out).some((n) => n.startsWith('.tmp-')))) {
        await new Promise((r) => setImmediate(r));
      }
    } else {
      // Anywhere: a fresh token at start, then a refresh every ~0.5 s.
      await new Promise((r) => setTimeout(r, 150 + Math.floor(Math.random() * 900)));
    }
    agent.child.kill('SIGKILL');
    await new Promise((r) => agent.child.once('exit', r));
    const r = checkFiles();
    temps += r.temps;
    for (const v of r.versions) seen.add(v);
  }
  // Not vacuous: versions kept changing, and kills did land in the middle of a write (a temp file
  // left behind is a kill between its creation and its rename).
  // (At least three versions: a loaded machine completes fewer refreshes between the kills.)
  expect(seen.size).toBeGreaterThanOrEqual(3);
  expect(temps).toBeGreaterThan(0);
  // A new start cleans what a crash left.
  const agent = await startAgent(['--bootstrap-key', join(dir, 'boot.json'), '--dir', out, '--issuer', url]);
  await new Promise((r) => setTimeout(r, 300));
  await agent.stop();
  expect(readdirSync(out).filter((n) => n.startsWith('.tmp-'))).toEqual([]);
  checkFiles();
}, 240_000);
