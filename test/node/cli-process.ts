/**
 * Helpers for the credctl tests: build the CLI with the project's script, run the bundle as a
 * child process (asynchronously: a blocking spawn would stall the in-process servers the tests
 * point it at), and get a real agent token from the issuer with a bootstrap file.
 */
import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { compactDecrypt, exportJWK, generateKeyPair, importJWK, SignJWT } from 'jose';
import { type BootstrapFile, type BootstrapKey, checkBootstrapFile } from '../../src/admin-api.js';
import { ROOT } from './worker-process.js';

const execFileAsync = promisify(execFile);

/** Builds dist-like output into `outdir`; returns the bundle's path. */
export async function buildCli(outdir?: string): Promise<string> {
  const args = [`${ROOT}scripts/build-cli.mjs`, ...(outdir ? ['--outdir', outdir] : [])];
  await execFileAsync(process.execPath, args, { cwd: ROOT });
  return `${outdir ?? `${ROOT}dist/cli`}/credctl.mjs`;
}

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** The child's whole environment beyond PATH: nothing is inherited, so no stray ADMIN_TOKEN. */
  env?: Record<string, string>;
  cwd: string;
  input?: string;
  timeoutMs?: number;
}

/** Runs `command args` with a clean environment and collects its output and exit code. */
export function runProcess(command: string, args: string[], opts: RunOptions): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: opts.cwd,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', NO_COLOR: '1', ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const killer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** A bootstrap file as the issuer answers it: the contract's, with the kid the Worker always writes. */
export type IssuedBootstrapFile = BootstrapFile & { key: BootstrapKey & { kid: string; d: string } };

/** `value` (parsed JSON) checked with the contract's checkBootstrapFile; throws naming the wrong field. */
export function issuedBootstrapFile(value: unknown): IssuedBootstrapFile {
  const c = checkBootstrapFile(value);
  if (!c.ok) throw new Error(`not a bootstrap file: ${c.field}: ${c.problem}`);
  if (typeof c.file.key.kid !== 'string') throw new Error('not a bootstrap file: key: no kid');
  return c.file as IssuedBootstrapFile;
}

/**
 * A client_credentials grant with the bootstrap key and a fresh X25519 key, so the agent token
 * carries encrypted credentials (`cred`): the token, its claims, and the delivered values (opened
 * with that key, as the agent does).
 */
export async function agentToken(
  file: BootstrapFile,
): Promise<{ token: string; claims: Record<string, unknown>; values: Record<string, string> }> {
  const key = await importJWK(file.key, 'EdDSA');
  const assertion = await new SignJWT({ jti: randomUUID() })
    .setProtectedHeader({ alg: 'EdDSA', kid: file.key.kid })
    .setIssuer(file.client_id)
    .setSubject(file.client_id)
    .setAudience(file.issuer)
    .setIssuedAt()
    .setExpirationTime('60s')
    .sign(key);
  const enc = await generateKeyPair('ECDH-ES+A256KW', { crv: 'X25519', extractable: true });
  const res = await fetch(file.token_endpoint, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'client_credentials',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: assertion,
      enc_jwk: JSON.stringify(await exportJWK(enc.publicKey)),
    }),
  });
  if (res.status !== 200) throw new Error(`token endpoint answered ${res.status}: ${await res.text()}`);
  const { access_token } = (await res.json()) as { access_token: string };
  const claims = JSON.parse(Buffer.from(access_token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
  const { plaintext } = await compactDecrypt(claims.cred as string, enc.privateKey);
  return {
    token: access_token,
    claims,
    values: (JSON.parse(new TextDecoder().decode(plaintext)) as { values: Record<string, string> }).values,
  };
}
