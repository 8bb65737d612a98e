#!/usr/bin/env node
/**
 * The change hook for an OpenClaw gateway (docs/architecture.md, "Change hook"): after the agent writes a new
 * credentials version, ask the running gateway to re-resolve its SecretRefs with the `secrets.reload`
 * RPC over its WebSocket on loopback. Same process, open connections kept; about 150 ms in the
 * gateway, against 2 to 3 s for the `openclaw secrets reload` CLI (its process start).
 *
 *   ON_CHANGE="node /usr/local/lib/credential-agent/openclaw-reload.mjs"
 *
 * How it authenticates (trusted-proxy mode has no gateway token, and OpenClaw refuses one next to
 * it): OpenClaw's documented path for internal same-host callers that bypass the proxy, a local
 * password (`gateway.auth.password`) presented by a `gateway-client`/`backend` client on a direct
 * loopback connection. The password is not a Worker secret and never leaves the container: this
 * script creates it on first run (random, in a 0600 JSON file next to credentials.json), and
 * openclaw.json names it by a SecretRef (`{source: "file", provider: "localrpc", id: "/password"}`),
 * so it is in no config, command line or environment. OpenClaw refuses that password on anything that
 * came through the verifying proxy (forwarded headers disqualify the local-direct fallback), so it
 * opens nothing to users. Why not the alternatives: the verifying proxy refuses agent tokens (scope
 * `agent`), and OpenClaw would take the call as a proxied user anyway; forging trusted-proxy headers
 * from loopback would impersonate a user; a paired device identity needs OpenClaw's silent local
 * pairing (which hands operator.admin to any local process that asks) and a persistent device record
 * with admin; the CLI profile is the 2 to 3 s CLI. See docs/moltworker.md.
 *
 * Exit codes: 0 reloaded, or no gateway listening (it resolves the file when it starts, so there is
 * nothing to reload); 1 the gateway refused or failed the reload (the old values stay in force, the
 * agent logs and counts the failure and retries at its next refresh); 2 usage or the password file.
 * It prints one line; never a secret value.
 */
import { randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import type { Duplex } from 'node:stream';
import { parseArgs } from 'node:util';
import { CONTAINER_PORTS, isLoopbackUrl } from '../src/admin-api.js';

/** OpenClaw's WebSocket protocol version (2026.9.6 speaks 4 only). */
const PROTOCOL_VERSION = 4;
/** The reserved client id and mode for direct-loopback backend RPCs: keeps the declared scope. */
const CLIENT = { id: 'gateway-client', mode: 'backend', version: 'credential-agent-reload/1' };
/** secrets.reload needs operator.admin (OpenClaw's method-scope table); nothing more is asked. */
const SCOPES = ['operator.admin'];
/** OpenClaw's default gateway port (start.sh's GATEWAY_PORT). */
const DEFAULT_GATEWAY_PORT = CONTAINER_PORTS.gateway;
/** The whole exchange: the RPC takes ~150 ms; a gateway busy starting may take a few seconds. */
const RELOAD_TIMEOUT_MS = 15_000;
/** The TCP probe before the WebSocket: loopback answers at once or not at all. */
const PROBE_TIMEOUT_MS = 2_000;
/** 32 random bytes, base64url: far beyond guessing, printable for a JSON file. */
const PASSWORD_BYTES = 32;
/** Name of the password file, next to credentials.json by default. */
export const LOCAL_AUTH_FILE = 'openclaw-local-auth.json';

export class ReloadError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

/**
 * The local password, created on first use: `{"password": "..."}` in a 0600 file (OpenClaw's file
 * provider refuses any other mode). Written to a temp file and hard-linked into place, which fails
 * if the file exists: a concurrent first run (the local stack and the agent's first hook run at
 * once) keeps the other's, and no reader ever sees the file before its content is complete, as it
 * could with an exclusive create followed by a write.
 */
export function ensureLocalPassword(file: string): string {
  const read = () => {
    const v = (JSON.parse(readFileSync(file, 'utf8')) as { password?: unknown }).password;
    if (typeof v !== 'string' || v.length < PASSWORD_BYTES) throw new ReloadError(`${file} holds no usable "password"`, 2);
    return v;
  };
  try {
    return read();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
      if (e instanceof ReloadError) throw e;
      throw new ReloadError(`cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? 'not JSON'})`, 2);
    }
  }
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  try {
    writeFileSync(tmp, `${JSON.stringify({ password: randomBytes(PASSWORD_BYTES).toString('base64url') })}\n`, { mode: 0o600, flag: 'wx' });
    linkSync(tmp, file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST')
      throw new ReloadError(`cannot create ${file} (${(e as NodeJS.ErrnoException).code})`, 2);
  } finally {
    rmSync(tmp, { force: true });
  }
  return read();
}

/** Whether something accepts TCP connections at the URL's host and port (false on ECONNREFUSED only). */
function listening(u: URL): Promise<boolean> {
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const port = Number(u.port || 80);
  return new Promise((resolve) => {
    const s = connect({ host, port, timeout: PROBE_TIMEOUT_MS });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('timeout', () => (s.destroy(), resolve(true))); // let the WebSocket report the failure
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code !== 'ECONNREFUSED'));
  });
}

/**
 * A minimal WebSocket client (RFC 6455: text frames, fragmentation, ping, close), enough for one
 * request and one answer. Not undici's: its megabyte of bundle takes ~300 ms to load at every hook
 * run, a third of the rotation's budget, and Node 20 has no WebSocket of its own.
 */
export interface MiniSocket {
  send(text: string): void;
  close(): void;
}

export function openWebSocket(
  url: string,
  on: { open(): void; message(text: string): void; close(detail: string): void; error(detail: string): void },
  /** More request headers for the upgrade (tests only: the hook sends none, so OpenClaw sees a direct local caller). */
  extraHeaders: Record<string, string> = {},
): MiniSocket {
  const u = new URL(url);
  let socket: Duplex | undefined;
  let closed = false;
  const frame = (opcode: number, payload: Buffer) => {
    const mask = randomBytes(4);
    const len = payload.length;
    const head = len < 126 ? Buffer.from([0x80 | opcode, 0x80 | len]) : len < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
    if (len >= 126 && len < 65536) {
      head[0] = 0x80 | opcode;
      head[1] = 0x80 | 126;
      head.writeUInt16BE(len, 2);
    } else if (len >= 65536) {
      head[0] = 0x80 | opcode;
      head[1] = 0x80 | 127;
      head.writeBigUInt64BE(BigInt(len), 2);
    }
    const body = Buffer.from(payload);
    for (let i = 0; i < body.length; i++) body[i]! ^= mask[i & 3]!;
    socket?.write(Buffer.concat([head, mask, body]));
  };
  const end = (detail: string) => {
    if (closed) return;
    closed = true;
    socket?.destroy();
    on.close(detail);
  };
  const req = request({
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port: Number(u.port || 80),
    path: `${u.pathname}${u.search}`,
    headers: {
      ...extraHeaders,
      connection: 'Upgrade',
      upgrade: 'websocket',
      'sec-websocket-version': '13',
      'sec-websocket-key': randomBytes(16).toString('base64'),
    },
  });
  req.on('error', (e: NodeJS.ErrnoException) => !closed && ((closed = true), on.error(e.code ?? e.message)));
  req.on('response', (res) => {
    res.resume();
    if (!closed) (closed = true), on.error(`HTTP ${res.statusCode} instead of a WebSocket upgrade`);
  });
  req.on('upgrade', (_res, s: Duplex, head: Buffer) => {
    socket = s;
    let buf = Buffer.alloc(0);
    let message: Buffer[] = [];
    const take = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (buf.length < 2) return;
        const fin = (buf[0]! & 0x80) !== 0;
        const opcode = buf[0]! & 0x0f;
        let len = buf[1]! & 0x7f;
        let off = 2;
        if (len === 126) {
          if (buf.length < 4) return;
          len = buf.readUInt16BE(2);
          off = 4;
        } else if (len === 127) {
          if (buf.length < 10) return;
          len = Number(buf.readBigUInt64BE(2));
          off = 10;
        }
        if (buf.length < off + len) return;
        const payload = buf.subarray(off, off + len);
        buf = buf.subarray(off + len);
        if (opcode === 0x8)
          return end(
            `${payload.length >= 2 ? payload.readUInt16BE(0) : 1005}${payload.length > 2 ? ` ${payload.subarray(2).toString('utf8').slice(0, 120)}` : ''}`,
          );
        if (opcode === 0x9) frame(0xa, payload);
        if (opcode === 0x1 || opcode === 0x0) {
          message.push(Buffer.from(payload));
          if (fin) {
            const text = Buffer.concat(message).toString('utf8');
            message = [];
            on.message(text);
          }
        }
      }
    };
    s.on('data', take);
    s.on('close', () => end('1006 connection lost'));
    s.on('error', () => end('1006 connection error'));
    on.open();
    // The gateway sends its connect.challenge at once: it may have arrived with the 101 answer.
    if (head.length > 0) take(head);
  });
  req.end();
  return {
    send: (text) => frame(0x1, Buffer.from(text, 'utf8')),
    close: () => {
      if (closed) return;
      frame(0x8, Buffer.from([0x03, 0xe8]));
      end('1000');
    },
  };
}

interface Frame {
  type?: string;
  id?: string;
  event?: string;
  ok?: boolean;
  payload?: Record<string, unknown>;
  error?: { code?: string; message?: string };
}

export interface ReloadResult {
  /** 'reloaded', or 'no-gateway' when nothing listens (ECONNREFUSED). */
  outcome: 'reloaded' | 'no-gateway';
  ms: number;
  warnings?: number;
}

/**
 * connect (after the gateway's connect.challenge) with the local password, then secrets.reload.
 * Resolves on the reload's answer; rejects with a ReloadError naming the gateway's error code.
 */
export async function reloadSecrets(url: string, password: string, timeoutMs = RELOAD_TIMEOUT_MS): Promise<ReloadResult> {
  const started = Date.now();
  // Nothing listens: the gateway is not running (yet; start.sh runs the hook once before it starts
  // the gateway). It resolves credentials.json when it starts, so this version needs no reload.
  // A TCP probe first, so "nothing listens" is told apart from every other failure.
  if (!(await listening(new URL(url)))) return { outcome: 'no-gateway', ms: Date.now() - started };
  return new Promise((resolve, reject) => {
    let opened = false;
    let settled = false;
    const finish = (f: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      ws.close();
      f();
    };
    const fail = (message: string, code = 1) => finish(() => reject(new ReloadError(message, code)));
    const timer = setTimeout(() => fail(`no answer from the gateway at ${url} within ${timeoutMs} ms`), timeoutMs);
    const send = (id: string, method: string, params: unknown) => ws.send(JSON.stringify({ type: 'req', id, method, params }));
    const ws = openWebSocket(url, {
      open: () => (opened = true),
      error: (detail) => fail(`the WebSocket to ${url} failed (${detail})${opened ? '' : ': not an OpenClaw gateway?'}`),
      close: (detail) => fail(`the gateway closed the connection (${detail})`),
      message: (data) => onMessage(data),
    });
    const onMessage = (data: string) => {
      let f: Frame;
      try {
        f = JSON.parse(data) as Frame;
      } catch {
        return fail('the gateway sent a frame that is not JSON');
      }
      if (f.type === 'event' && f.event === 'connect.challenge') {
        // The password travels in this frame only: never in the URL, a header or a log.
        return send('connect', 'connect', {
          minProtocol: PROTOCOL_VERSION,
          maxProtocol: PROTOCOL_VERSION,
          client: { ...CLIENT, platform: process.platform },
          role: 'operator',
          scopes: SCOPES,
          auth: { password },
        });
      }
      if (f.type !== 'res') return;
      const why = () => `${f.error?.code ?? 'error'}: ${(f.error?.message ?? '').slice(0, 200)}`;
      if (f.id === 'connect') {
        if (!f.ok) return fail(`the gateway refused the connection (${why()})`);
        return send('reload', 'secrets.reload', {});
      }
      if (f.id === 'reload') {
        if (!f.ok) return fail(`secrets.reload failed (${why()}); the gateway keeps the values it had`);
        const warnings = typeof f.payload?.warningCount === 'number' ? f.payload.warningCount : undefined;
        finish(() => resolve({ outcome: 'reloaded', ms: Date.now() - started, warnings }));
      }
    };
  });
}

const USAGE = `usage: openclaw-reload [--url ws://127.0.0.1:PORT] [--auth-file FILE]
  Asks the running OpenClaw gateway to re-resolve its SecretRefs (secrets.reload), as the agent's
  change hook. --url: OPENCLAW_RELOAD_URL, else ws://127.0.0.1:$GATEWAY_PORT (${DEFAULT_GATEWAY_PORT}).
  --auth-file: OPENCLAW_LOCAL_AUTH_FILE, else ${LOCAL_AUTH_FILE} next to $CREDENTIALS_FILE (created 0600
  on first run; openclaw.json's gateway.auth.password is a SecretRef to its /password).`;

/** A plain ws:// URL to this machine by the contract's loopback rule, with no credentials in it. */
function isLoopbackWs(url: string): boolean {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return false;
  }
  return u.protocol === 'ws:' && u.username === '' && u.password === '' && isLoopbackUrl(u);
}

export function parseReloadArgs(argv: string[], env: NodeJS.ProcessEnv): { url: string; authFile: string } {
  let values: { url?: string; 'auth-file'?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { url: { type: 'string' }, 'auth-file': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
    }));
  } catch (e) {
    throw new ReloadError(`${(e as Error).message.split('\n')[0]}\n${USAGE}`, 2);
  }
  if (values.help) throw new ReloadError(USAGE, 0);
  const port = env.GATEWAY_PORT || String(DEFAULT_GATEWAY_PORT);
  const url = values.url ?? (env.OPENCLAW_RELOAD_URL || `ws://127.0.0.1:${port}`);
  if (!isLoopbackWs(url)) {
    // The password must only ever travel over loopback, where OpenClaw accepts it.
    throw new ReloadError(`--url must be a ws:// loopback address (127.0.0.0/8, [::1], localhost), not ${url.slice(0, 80)}`, 2);
  }
  const explicit = values['auth-file'] ?? env.OPENCLAW_LOCAL_AUTH_FILE;
  if (explicit) return { url, authFile: explicit };
  if (!env.CREDENTIALS_FILE)
    throw new ReloadError(`no --auth-file, OPENCLAW_LOCAL_AUTH_FILE or CREDENTIALS_FILE (the agent sets it)\n${USAGE}`, 2);
  return { url, authFile: join(dirname(env.CREDENTIALS_FILE), LOCAL_AUTH_FILE) };
}

async function main(): Promise<number> {
  try {
    const { url, authFile } = parseReloadArgs(process.argv.slice(2), process.env);
    const r = await reloadSecrets(url, ensureLocalPassword(authFile));
    if (r.outcome === 'no-gateway') console.log(`openclaw-reload: no gateway listening at ${url}; it reads the credentials when it starts`);
    else
      console.log(
        `openclaw-reload: secrets.reload done in ${r.ms} ms${r.warnings ? ` (${r.warnings} warnings: see the gateway's log)` : ''}`,
      );
    return 0;
  } catch (e) {
    if (!(e instanceof ReloadError)) throw e;
    (e.exitCode === 0 ? console.log : console.error)(e.exitCode === 0 ? e.message : `openclaw-reload: ${e.message}`);
    return e.exitCode;
  }
}

// Run as a program, not when a test imports it.
if (process.argv[1] && /openclaw-reload\.(ts|mjs|js)$/.test(process.argv[1])) process.exit(await main());
