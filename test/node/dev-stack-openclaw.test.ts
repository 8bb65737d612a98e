/**
 * `npm run dev -- --gateway openclaw` on a fresh copy of the working tree (tracked and unignored
 * files; node_modules and the installed .gateway/ linked in, as after `npm ci` and `npm run
 * gateway:install`): the real OpenClaw comes up on the gateway port in trusted-proxy mode, the stack
 * prints the Control UI URL and the CLI command, the gateway answers, openclaw.json holds no secret,
 * and Ctrl-C leaves no OpenClaw process behind, its spawn broker (a process group of its own)
 * included. Without .gateway/ it stops at once with one line. On a free base port: other stacks
 * may hold 8787.. on a shared machine.
 *
 * The whole-chain checks of the real gateway (CLI, Control UI in a browser, rotation) live in their
 * own tests; this one checks the stack around it.
 */
import { type ChildProcess, exec } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MARKER_ENV } from '../../scripts/local-stack/processes.js';
import { type CredentialsFile, DEV_VARS_FILE, parseDotenv } from '../../src/admin-api.js';
import { assertRealGateway, itRealGateway } from './real-gateway.js';
import { freshCopy, type Proc, processes, spawnOpenClawStack } from './stack-copy.js';
import { freeBase, portFree } from './worker-process.js';

const run = promisify(exec);
/** The stack with the real gateway: issuer .. model provider, egress hop. */
const PORT_COUNT = 6;
/** wrangler's first bundle, the agent, then OpenClaw (10 to 30 s on two shared cores). */
const STACK_UP_MS = 240_000;
const copy = mkdtempSync(join(tmpdir(), 'issuer-openclaw-'));
const bare = mkdtempSync(join(tmpdir(), 'issuer-no-gateway-'));

function waitForOutput(child: ChildProcess, out: () => string, pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + timeoutMs;
    const timer = setInterval(() => {
      const m = out().match(pattern);
      if (m) return done(() => resolve(m));
      if (child.exitCode !== null) return done(() => reject(new Error(`npm run dev exited (${child.exitCode}):\n${out()}`)));
      if (Date.now() > deadline) done(() => reject(new Error(`no match for ${pattern} within ${timeoutMs} ms:\n${out()}`)));
    }, 200);
    const done = (f: () => void) => {
      clearInterval(timer);
      f();
    };
  });
}

beforeAll(async () => {
  await freshCopy(copy, { gateway: true });
  await freshCopy(bare, { gateway: false });
}, 60_000);
afterAll(() => {
  rmSync(copy, { recursive: true, force: true });
  rmSync(bare, { recursive: true, force: true });
});

describe('npm run dev -- --gateway openclaw', () => {
  let child: ChildProcess | undefined;
  afterAll(async () => {
    // Only if the test failed half-way: never leave the stack running. Ctrl-C first, so the stack
    // stops its children (each in a group of its own, which a SIGKILL of npm's group would orphan);
    // then whatever still runs in the copy or with the gateway's HOME is killed.
    if (child?.pid && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child!.once('exit', resolve));
      try {
        process.kill(-child.pid, 'SIGINT');
      } catch {
        /* already gone */
      }
      await Promise.race([exited, new Promise((r) => setTimeout(r, 30_000))]);
    }
    const home = `HOME=${join(copy, '.dev-stack', 'openclaw-home')}`;
    for (const p of processes()) {
      let cwd = '';
      try {
        cwd = readlinkSync(`/proc/${p.pid}/cwd`);
      } catch {
        /* gone */
      }
      if (p.env.includes(home) || (cwd.startsWith(copy) && p.env.some((e) => e.startsWith(`${MARKER_ENV}=`)))) {
        try {
          process.kill(p.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
  }, 60_000);

  itRealGateway(
    'starts the real gateway, prints the Control UI URL and the CLI command, and Ctrl-C leaves no OpenClaw process',
    async () => {
      assertRealGateway();
      const base = await freeBase(PORT_COUNT);
      const started = Date.now();
      const dev = spawnOpenClawStack(copy, base);
      child = dev.child;
      const out = dev.output;
      await waitForOutput(child, out, /^Then the operator CLI/m, STACK_UP_MS);
      const upAfter = Date.now() - started;
      const ready = /^OpenClaw is ready \((\d+\.\d) s\)$/m.exec(out());
      console.log(`dev stack with the real gateway up in ${(upAfter / 1000).toFixed(1)} s; OpenClaw ready ${ready?.[1]} s after its start`);
      expect(ready).not.toBeNull();

      // The two lines of issue 13, item 2, each on a line of its own.
      const issuer = `http://127.0.0.1:${base}`;
      const lines = out().split('\n');
      expect(lines).toContain(`  ${issuer}/`);
      const cli = lines.find((l) => l.includes('.gateway/bin/openclaw gateway call health'));
      expect(cli).toBe(
        `  OPENCLAW_STATE_DIR=.dev-stack/openclaw-cli .gateway/bin/openclaw gateway call health --expect-url ws://127.0.0.1:${base} --json`,
      );
      expect(cli).not.toMatch(/--token|--password/);

      // The gateway answers on its own port, and through the chain with the proxy's identity.
      const gateway = `http://127.0.0.1:${base + 3}`;
      expect((await fetch(`${gateway}/readyz`)).status).toBe(200);
      const models = await fetch(`${issuer}/v1/models`);
      expect(models.status).toBe(200);
      expect(((await models.json()) as { object: string }).object).toBe('list');
      const ui = await fetch(`${issuer}/`);
      expect(ui.status).toBe(200);
      expect(ui.headers.get('content-type')).toMatch(/^text\/html/);

      // openclaw.json: owner-only, trusted-proxy, SecretRefs and no secret value.
      const home = join(copy, '.dev-stack', 'openclaw-home');
      const configFile = join(home, '.openclaw', 'openclaw.json');
      expect(statSync(configFile).mode & 0o077).toBe(0);
      const text = readFileSync(configFile, 'utf8');
      const config = JSON.parse(text);
      expect(config.gateway).toMatchObject({
        mode: 'local',
        port: base + 3,
        bind: 'loopback',
        trustedProxies: ['127.0.0.1'],
        auth: {
          mode: 'trusted-proxy',
          trustedProxy: { userHeader: 'x-forwarded-user', allowLoopback: true, deviceAutoApprove: { enabled: true } },
        },
        controlUi: { allowedOrigins: [issuer] },
        http: { endpoints: { chatCompletions: { enabled: true } } },
      });
      expect(config.gateway.auth.identityScopes['dev@localhost']).toContain('operator.admin');
      expect(config.gateway.auth.token).toBeUndefined();
      expect(config.models.providers.standin.apiKey).toEqual({ source: 'file', provider: 'agentcreds', id: '/values/PROVIDER_API_KEY' });
      // The model calls go to the local egress hop (base + 5), which hands them to the Worker's egress handler.
      expect(config.models.providers.standin.baseUrl).toBe(`http://127.0.0.1:${base + 5}/v1`);
      expect(lines).toContain(
        `  egress   http://127.0.0.1:${base + 5}   local egress hop: hands provider traffic to the Worker's egress handler (plain HTTP; production intercepts HTTPS)`,
      );
      expect(config.secrets.providers.agentcreds).toEqual({
        source: 'file',
        path: join(copy, '.dev-stack', 'agent', 'credentials.json'),
        mode: 'json',
      });
      const credentials = JSON.parse(readFileSync(join(copy, '.dev-stack', 'agent', 'credentials.json'), 'utf8')) as CredentialsFile;
      const devVars = parseDotenv(readFileSync(join(copy, DEV_VARS_FILE), 'utf8'));
      const secretNames = ['ADMIN_TOKEN', 'SIGNING_KEY_KEK', 'MOLTBOT_GATEWAY_TOKEN', 'STANDIN_PROVIDER_KEY'];
      const secrets = [...Object.values(credentials.values), ...secretNames.filter((n) => devVars[n]).map((n) => devVars[n]!)];
      expect(secrets.length).toBeGreaterThanOrEqual(6);
      for (const s of secrets) expect(text).not.toContain(s);

      // What the real gateway runs: OpenClaw's process, its spawn broker in a group of its own. The
      // stack marks its children `<stack pid>:<name>`; the gateway's marker names the stack's pid.
      const marker = (p: Proc) => p.env.find((e) => e.startsWith(`${MARKER_ENV}=`))?.slice(MARKER_ENV.length + 1);
      const gatewayProc = processes().find((p) => p.env.includes(`HOME=${home}`) && marker(p) !== undefined);
      const gatewayMarker = gatewayProc ? marker(gatewayProc)! : '';
      expect(gatewayMarker).toMatch(/^\d+:gateway$/);
      const stackPid = gatewayMarker.split(':')[0]!;
      const ours = () => processes().filter((p) => p.env.includes(`HOME=${home}`) || marker(p) === gatewayMarker);
      const gatewayProcs = ours();
      expect(gatewayProcs.map((p) => p.cmd).join('\n')).toMatch(/spawn-broker/);
      const stack = processes().filter((p) => marker(p)?.startsWith(`${stackPid}:`));
      expect(stack.map((p) => p.cmd).join('\n')).toMatch(/workerd/);
      expect(stack.length).toBeGreaterThan(gatewayProcs.length);

      // Ctrl-C: the terminal sends SIGINT to the foreground process group.
      const exited = dev.exited;
      const stopAt = Date.now();
      process.kill(-child.pid!, 'SIGINT');
      expect(['exit 0', 'SIGINT']).toContain(await exited);
      console.log(`stopped in ${((Date.now() - stopAt) / 1000).toFixed(1)} s`);
      expect(out()).toContain('stopped; nothing of the stack is left running');
      const alive = new Set(processes().map((p) => p.pid));
      expect(gatewayProcs.filter((p) => alive.has(p.pid)).map((p) => p.cmd)).toEqual([]);
      expect(ours().map((p) => p.cmd)).toEqual([]);
      expect(stack.filter((p) => alive.has(p.pid)).map((p) => p.cmd)).toEqual([]);
      for (let d = 0; d < PORT_COUNT; d++) expect(await portFree(base + d)).toBe(true);
    },
    STACK_UP_MS + 60_000,
  );

  it('without .gateway/ it stops before starting anything, with one line naming npm run gateway:install', async () => {
    const base = await freeBase(PORT_COUNT);
    const err = await run(`npm run --silent dev -- --gateway openclaw --base-port ${base}`, { cwd: bare, timeout: 60_000 }).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err?.code).toBe(1);
    expect(err!.stderr.trim().split('\n')).toEqual([
      'dev: the real gateway is not installed (.gateway/ does not exist): run `npm run gateway:install` first',
    ]);
    expect(existsSync(join(bare, '.dev.vars'))).toBe(false);
    expect(existsSync(join(bare, '.dev-stack'))).toBe(false);
    for (let d = 0; d < PORT_COUNT; d++) expect(await portFree(base + d)).toBe(true);
  }, 90_000);

  it('a bad --gateway is one line and exit 2', async () => {
    const err = await run('npm run --silent dev -- --gateway nginx', { cwd: bare, timeout: 60_000 }).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err?.code).toBe(2);
    expect(err!.stderr.trim()).toBe('dev: --gateway: must be stand-in (the default) or openclaw, not "nginx"');
  }, 90_000);
});
