/**
 * Rotating a secret in the local stack as a deploy does (issue 13 item 6): `npm run dev:rotate --
 * NAME` writes a fresh random value for NAME into .dev.vars (or, with no NAME, takes what was edited
 * there by hand) and asks the running stack, over a Unix socket in .dev-stack/ (owner-only), to
 * apply it. Which flow runs depends on how CREDENTIALS delivers what changed.
 *
 * The egress flow, when every changed name is the secret of an egress entry of CREDENTIALS
 * (STANDIN_PROVIDER_KEY locally): the container only ever holds a sentinel for it, and the
 * Worker's egress handler reads the secret from its env at each request, so nothing in the sandbox
 * changes:
 *
 *   1. the stand-in model provider accepts the new key as well as the old one (the "create a new
 *      key, do not revoke the old yet" step of docs/secret-rotation.md, runbook 2);
 *   2. the Worker restarts: wrangler dev reads .dev.vars only when it starts, as a deploy starts a
 *      new Worker version with the new secret; from then on every model call gets the new key;
 *   3. the provider revokes the old key at once: no Worker that holds it is left running;
 *   4. one chat completion through the whole chain proves it, and times it (from the new Worker
 *      serving to the provider accepting a call with the new key). No agent refresh, no change
 *      hook: the agent's credentials version stays what it was.
 *
 * The push flow, for anything else (MOLTBOT_GATEWAY_TOKEN, a value the sandbox holds):
 *
 *   1. as above, when the provider's key is among the changes;
 *   2. the Worker restarts, as above;
 *   3. the push: in production the restarted Worker asks the sandbox's agent to refresh through
 *      the Sandbox binding. Locally there is no Sandbox binding (GATEWAY_UPSTREAM points at the
 *      proxy on loopback), so the Worker's push reaches no one, and the stack sends the agent's
 *      POST /refresh itself, the moment the new Worker serves;
 *   4. the agent writes the new credentials.json and runs its change hook, which calls the
 *      gateway's secrets.reload (container/openclaw-reload.ts); the stack waits for the hook's
 *      success in the agent's metrics;
 *   5. only then (if it changed) the provider revokes the old key.
 *
 * The value never travels on a command line, in the socket's messages or in a log: dev:rotate
 * writes it to .dev.vars, the stack reads it from there. The answer carries timestamps,
 * fingerprints and versions only.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import { dotenvEntry } from '../../src/admin-api.js';

/** The control socket, in the stack's state folder. */
export const CONTROL_SOCKET = 'control.sock';
/** 32 random bytes, base64url: what ensureDevVars gives every fresh secret. */
const SECRET_BYTES = 32;

/** One line of progress: what happened, when (epoch ms). */
export interface RotationEvent {
  step: string;
  at: number;
  detail?: string;
}

/** Which rotation ran: the Worker alone (egress-delivered secrets), or the Worker and the agent's refresh. */
export type RotationFlow = 'egress' | 'push';

export interface RotationReport {
  ok: boolean;
  /** Names of the .dev.vars entries whose value changed. */
  changed: string[];
  /** Set once the stack decided (not when nothing changed). */
  flow?: RotationFlow;
  events: RotationEvent[];
  error?: string;
}

/**
 * Puts a fresh random value for `name` into the dotenv file, in place of its line (or appended),
 * atomically and owner-only. Returns nothing: the value stays in the file.
 */
export function writeFreshValue(devVarsPath: string, name: string): void {
  writeValue(devVarsPath, name, randomBytes(SECRET_BYTES).toString('base64url'));
}

/**
 * Puts `name=value` into the dotenv file, in place of its line (or appended), atomically and
 * owner-only; every other line stays as it was. `value` is written as given (quote it yourself).
 */
export function writeValue(devVarsPath: string, name: string, value: string): void {
  const lines = readFileSync(devVarsPath, 'utf8').split('\n');
  let found = false;
  const out = lines.map((line) => {
    if (dotenvEntry(line)?.name !== name) return line;
    found = true;
    return `${name}=${value}`;
  });
  if (!found) out.splice(out.length && out[out.length - 1] === '' ? out.length - 1 : out.length, 0, `${name}=${value}`);
  const tmp = `${devVarsPath}.rotate.tmp`;
  writeFileSync(tmp, out.join('\n'), { mode: 0o600 });
  renameSync(tmp, devVarsPath);
}

/**
 * The stack's end: an HTTP server on a Unix socket, `POST /rotate`, answering with one JSON report
 * when the rotation is done (or failed). One rotation at a time.
 */
export function startControlServer(socketPath: string, rotate: () => Promise<RotationReport>): Promise<Server> {
  let busy = false;
  const server = createServer((req, res) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(`${JSON.stringify(body)}\n`);
    };
    req.resume();
    if (req.method !== 'POST' || req.url !== '/rotate') return send(404, { ok: false, error: 'POST /rotate only' });
    if (busy) return send(409, { ok: false, error: 'a rotation is already running' });
    busy = true;
    rotate()
      .then(
        (r) => send(r.ok ? 200 : 500, r),
        (e: Error) => send(500, { ok: false, changed: [], events: [], error: e.message }),
      )
      .finally(() => (busy = false));
  });
  // A socket left by a stack that was SIGKILLed would make listen fail with EADDRINUSE.
  rmSync(socketPath, { force: true });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      // Only the owner may ask the stack to restart its Worker.
      chmodSync(socketPath, 0o600);
      resolve(server);
    });
  });
}

/** dev:rotate's end: asks the stack to apply .dev.vars, waits for the report. */
export function requestRotation(socketPath: string, timeoutMs: number): Promise<RotationReport> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method: 'POST', path: '/rotate', timeout: timeoutMs }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => {
        try {
          resolve(JSON.parse(text) as RotationReport);
        } catch {
          reject(new Error(`the stack answered HTTP ${res.statusCode} without a report`));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from the stack within ${Math.round(timeoutMs / 1000)} s`)));
    req.on('error', reject);
    req.end();
  });
}
