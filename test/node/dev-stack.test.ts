/**
 * The README's first command on a fresh copy of the working tree: `npm ci && npm run dev` as a
 * child process (in a process group of its own, as a terminal runs a job), the printed `curl`
 * through the whole chain, the printed chat completion through the whole chain (gateway -> egress
 * hop -> the Worker's egress handler -> stand-in model provider, which sees the real key while the
 * sandbox holds a sentinel), then Ctrl-C (SIGINT to the group): no process of the stack may be left
 * and every port must be free. Also: a port in use is one clear line, .dev.vars is never
 * overwritten, a provider entry not delivered at egress is one line with the fix, and the previous
 * keys.example CREDENTIALS is brought up to today's.
 */
import { type ChildProcess, exec, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXED_REPLY, keyFingerprint } from '../../scripts/local-stack/model-provider.js';
import { CREDENTIALS_FILE, type CredentialsFile, LOCAL_BASE_PORT, localStackPorts } from '../../src/admin-api.js';
import { freePort, ROOT } from './worker-process.js';

const run = promisify(exec);
/** issuer, agent, proxy, gateway, model provider, egress hop. */
/** The stack's six ports at the default base (8787..8792). */
const PORTS = Object.values(localStackPorts(LOCAL_BASE_PORT));
/** keys.example's CREDENTIALS before egress delivery. */
const PREVIOUS_CREDENTIALS =
  '{"GATEWAY_TOKEN":{"secret":"MOLTBOT_GATEWAY_TOKEN","derive":true},"PROVIDER_API_KEY":{"secret":"STANDIN_PROVIDER_KEY"}}';

/** A base port with its six ports free. */
async function freeWindow(): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const p = await freePort();
    if (p <= 65530 && (await Promise.all([1, 2, 3, 4, 5].map((d) => portFree(p + d)))).every(Boolean)) return p;
  }
  return 0;
}
const copy = mkdtempSync(join(tmpdir(), 'issuer-fresh-'));

/** The README's "Run it" command for the local stack, exactly as written there. */
function readmeDevCommand(): string {
  const readme = readFileSync(`${ROOT}README.md`, 'utf8');
  const blocks = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!.trim());
  const cmd = blocks.find((b) => b.endsWith('npm run dev'));
  if (!cmd) throw new Error('README has no ```sh block ending in npm run dev');
  return cmd;
}

/** Files a clone would hold: tracked and not ignored (.dev.vars, node_modules, state stay out). */
async function freshCopy(dest: string): Promise<void> {
  const { stdout } = await run('git ls-files -z --cached --others --exclude-standard', { cwd: ROOT, maxBuffer: 16 << 20 });
  for (const rel of stdout.split('\0').filter(Boolean)) {
    if (!existsSync(join(ROOT, rel))) continue; // deleted in the working tree
    mkdirSync(dirname(join(dest, rel)), { recursive: true });
    cpSync(join(ROOT, rel), join(dest, rel));
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

interface Proc {
  pid: number;
  ppid: number;
  state: string;
  cmd: string;
}
function processes(): Proc[] {
  const out: Proc[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8').replace(/\0/g, ' ');
      out.push({ pid: Number(name), state: rest[0]!, ppid: Number(rest[1]), cmd });
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}
function descendants(root: number): Proc[] {
  const all = processes();
  const found: Proc[] = [];
  let frontier = [root];
  while (frontier.length) {
    const next = all.filter((p) => frontier.includes(p.ppid));
    found.push(...next);
    frontier = next.map((p) => p.pid);
  }
  return found;
}
const alive = (pid: number) => processes().some((p) => p.pid === pid && p.state !== 'Z');

function waitForOutput(child: ChildProcess, out: () => string, pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    const timer = setInterval(check, 200);
    const deadline = Date.now() + timeoutMs;
    function check() {
      const m = out().match(pattern);
      if (m) return done(() => resolve(m));
      if (child.exitCode !== null) return done(() => reject(new Error(`npm run dev exited (${child.exitCode}):\n${out()}`)));
      if (Date.now() > deadline) done(() => reject(new Error(`no match for ${pattern} within ${timeoutMs} ms:\n${out()}`)));
    }
    function done(f: () => void) {
      clearInterval(timer);
      f();
    }
  });
}

beforeAll(async () => {
  for (const p of PORTS)
    if (!(await portFree(p))) throw new Error(`port ${p} is in use: stop the local stack (npm run dev) before running the tests`);
  await freshCopy(copy);
}, 60_000);
afterAll(() => rmSync(copy, { recursive: true, force: true }));

describe('npm run dev on a fresh copy', () => {
  let child: ChildProcess;
  let out = '';

  afterAll(() => {
    // Only if the test failed half-way: never leave the stack running.
    if (child?.pid && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  });

  it('starts the stack, the printed curl goes through the chain, and Ctrl-C leaves no process and no port behind', async () => {
    const command = readmeDevCommand();
    expect(command).toBe('npm ci && npm run dev');
    child = spawn('sh', ['-c', command], {
      cwd: copy,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      // ISSUER_URL as an operator's shell may export it for credctl: the stack must not follow it.
      env: {
        ...process.env,
        CI: 'true',
        npm_config_audit: 'false',
        npm_config_fund: 'false',
        ISSUER_URL: 'https://issuer.example.invalid',
      },
    });
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));

    const [, curl] = await waitForOutput(child, () => out, /^ {2}(curl -s http:\/\/127\.0\.0\.1:8787\/\S*)$/m, 180_000);
    expect(out).toContain('Local stack is up');
    // The shell's ISSUER_URL points elsewhere, so the CLI hints name the local issuer.
    expect(out).toMatch(/^ {2}npx credctl --issuer http:\/\/127\.0\.0\.1:8787 status /m);
    // First run of a clone: .dev.vars written with fresh secrets, none of keys.example's placeholders.
    const vars = readFileSync(join(copy, '.dev.vars'), 'utf8');
    expect(vars).toMatch(/^ADMIN_TOKEN=[A-Za-z0-9_-]{43}$/m);
    expect(vars).not.toContain('replace-me');
    expect(statSync(join(copy, '.dev.vars')).mode & 0o077).toBe(0);

    const { stdout } = await run(curl!, { cwd: copy, timeout: 15_000 });
    expect(JSON.parse(stdout)).toMatchObject({ gateway: 'stand-in', user: 'dev@localhost', gateway_token: 'accepted' });

    // The printed chat completion, as printed: Worker -> proxy -> stand-in gateway -> egress hop ->
    // the Worker's egress handler -> stand-in model provider.
    expect(out).toMatch(/^ {2}egress {3}http:\/\/127\.0\.0\.1:8792 {3}local egress hop: /m);
    const completionCurl = /^ {2}(curl -s -X POST http:\/\/127\.0\.0\.1:8787\/v1\/chat\/completions .*)$/m.exec(out)?.[1];
    expect(completionCurl).toBeDefined();
    const completion = JSON.parse((await run(completionCurl!, { cwd: copy, timeout: 15_000 })).stdout) as {
      choices: { message: { content: string } }[];
    };
    expect(completion.choices[0]!.message.content).toBe(FIXED_REPLY);
    // The sandbox holds a sentinel (a JWS), never the key; the provider saw the real key, only it.
    const realKey = /^STANDIN_PROVIDER_KEY=(.+)$/m.exec(vars)![1]!;
    const held = (JSON.parse(readFileSync(join(copy, '.dev-stack', 'agent', CREDENTIALS_FILE), 'utf8')) as CredentialsFile).values
      .PROVIDER_API_KEY!;
    expect(held).toMatch(/^eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+$/);
    expect(held).not.toContain(realKey);
    const providerLog = readFileSync(join(copy, '.dev-stack', 'logs', 'model-provider.log'), 'utf8');
    const calls = providerLog.split('\n').filter((l) => l.includes('POST /v1/chat/completions'));
    // The stack's own check at start, then the printed curl.
    expect(calls.length).toBeGreaterThanOrEqual(2);
    for (const l of calls) expect(l).toContain(`key ${keyFingerprint(realKey)}: accepted`);
    expect(providerLog).not.toContain(keyFingerprint(held));
    expect(readFileSync(join(copy, '.dev-stack', 'logs', 'egress-hop.log'), 'utf8')).toMatch(/ POST \/v1\/chat\/completions 200 /);
    for (const f of ['model-provider.log', 'egress-hop.log', 'issuer.log', 'proxy.log', 'agent.log']) {
      const text = readFileSync(join(copy, '.dev-stack', 'logs', f), 'utf8');
      expect(text.includes(realKey) || text.includes(held), f).toBe(false);
    }

    const stack = descendants(child.pid!);
    const cmds = stack.map((p) => p.cmd).join('\n');
    expect(cmds).toMatch(/workerd/);
    expect(cmds).toMatch(/container\/refresh\.ts/);
    expect(cmds).toMatch(/container\/gateway-proxy\.ts/);
    for (const p of PORTS) expect(await portFree(p)).toBe(false);

    // Ctrl-C: the terminal sends SIGINT to the whole foreground process group.
    const exited = new Promise<string>((resolve) => child.once('exit', (code, signal) => resolve(signal ?? `exit ${code}`)));
    process.kill(-child.pid!, 'SIGINT');
    // The `sh -c` wrapper may itself die of the SIGINT (a shell's choice); the stack's own exit is
    // the line it prints after stopping everything.
    expect(['exit 0', 'SIGINT']).toContain(await exited);
    expect(out).toContain('stopped; nothing of the stack is left running');

    expect(stack.filter((p) => alive(p.pid)).map((p) => p.cmd)).toEqual([]);
    expect(
      processes()
        .filter((p) => p.state !== 'Z' && p.cmd.includes(copy))
        .map((p) => p.cmd),
    ).toEqual([]);
    for (const p of PORTS) expect(await portFree(p)).toBe(true);
  }, 240_000);
});

describe('what npm run dev refuses', () => {
  let blocker: Server | undefined;
  afterAll(() => blocker?.close());

  it('a port in use is one line naming it, and nothing is started', async () => {
    // A base port with its six ports free, then one of them taken.
    const base = await freeWindow();
    expect(base).toBeGreaterThan(0);
    blocker = createServer();
    await new Promise<void>((r) => blocker!.listen(base + 2, '127.0.0.1', () => r()));
    const devVarsBefore = existsSync(join(copy, '.dev.vars')) ? readFileSync(join(copy, '.dev.vars'), 'utf8') : undefined;

    const err = await run(`npm run --silent dev -- --base-port ${base}`, { cwd: copy, timeout: 60_000 }).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err?.code).toBe(1);
    expect(err!.stderr.trim().split('\n')).toEqual([
      `dev: port ${base + 2} (proxy) is already in use on 127.0.0.1: stop what holds it (\`lsof -i :${base + 2}\` shows it), or move the stack with \`npm run dev -- --base-port <N>\``,
    ]);
    expect(await portFree(base)).toBe(true);
    expect(existsSync(join(copy, '.dev.vars')) ? readFileSync(join(copy, '.dev.vars'), 'utf8') : undefined).toBe(devVarsBefore);
  }, 90_000);

  it('a broken .dev.vars stops it at once with a line saying so, and nothing is left running', async () => {
    const file = join(copy, '.dev.vars');
    const original = readFileSync(file, 'utf8');
    const base = await freeWindow();
    try {
      // config.ts wants 32 characters at least: every request would be a 500 configuration error.
      writeFileSync(file, original.replace(/^ADMIN_TOKEN=.*$/m, 'ADMIN_TOKEN=too-short'));
      const started = Date.now();
      const err = await run(`npm run --silent dev -- --base-port ${base}`, { cwd: copy, timeout: 90_000 }).then(
        () => undefined,
        (e: { code: number; stderr: string }) => e,
      );
      expect(err?.code).toBe(1);
      expect(err!.stderr.split('\n')[0]).toBe(
        `dev: the issuer answers HTTP 500 at http://127.0.0.1:${base}/.well-known/jwks.json: its configuration is invalid (the log names the option and the rule; check .dev.vars)`,
      );
      expect(err!.stderr).toMatch(/"option":"ADMIN_TOKEN"/); // the log tail under it
      expect(err!.stderr).not.toContain('too-short');
      expect(Date.now() - started).toBeLessThan(60_000); // not the 120 s start timeout
      expect(
        processes()
          .filter((p) => p.state !== 'Z' && p.cmd.includes(copy))
          .map((p) => p.cmd),
      ).toEqual([]);
      for (const d of [0, 1, 2, 3, 4, 5]) expect(await portFree(base + d)).toBe(true);
    } finally {
      writeFileSync(file, original);
    }
  }, 120_000);

  it('a provider key entry not delivered at egress is one line with the exact CREDENTIALS to put in, and nothing is started', async () => {
    const file = join(copy, '.dev.vars');
    const original = readFileSync(file, 'utf8');
    const base = await freeWindow();
    try {
      // A plain entry, but not keys.example's old default (another entry next to it): not migrated.
      const mine =
        '{"GATEWAY_TOKEN":{"secret":"MOLTBOT_GATEWAY_TOKEN","derive":true},"PROVIDER_API_KEY":{"secret":"STANDIN_PROVIDER_KEY"},"OTHER":{"secret":"ADMIN_TOKEN"}}';
      writeFileSync(file, original.replace(/^CREDENTIALS=.*$/m, `CREDENTIALS='${mine}'`));
      const err = await run(`npm run --silent dev -- --base-port ${base}`, { cwd: copy, timeout: 60_000 }).then(
        () => undefined,
        (e: { code: number; stderr: string }) => e,
      );
      expect(err?.code).toBe(1);
      const fixed =
        '{"GATEWAY_TOKEN":{"secret":"MOLTBOT_GATEWAY_TOKEN","derive":true},"PROVIDER_API_KEY":{"secret":"STANDIN_PROVIDER_KEY","egress":{"hosts":["localhost"],"header":"authorization"}},"OTHER":{"secret":"ADMIN_TOKEN"}}';
      expect(err!.stderr.trim().split('\n')).toEqual([
        `dev: CREDENTIALS in .dev.vars delivers STANDIN_PROVIDER_KEY (PROVIDER_API_KEY) other than at egress to "localhost" in "authorization", which the local stack's model calls need: put CREDENTIALS='${fixed}' in .dev.vars`,
      ]);
      expect(readFileSync(file, 'utf8')).toContain(`CREDENTIALS='${mine}'`);
      for (const d of [0, 1, 2, 3, 4, 5]) expect(await portFree(base + d)).toBe(true);
    } finally {
      writeFileSync(file, original);
    }
  }, 90_000);

  it("keys.example's previous CREDENTIALS (the provider key as a plain entry) is brought up to today's, and nothing else changes", async () => {
    const file = join(copy, '.dev.vars');
    const original = readFileSync(file, 'utf8');
    const base = await freeWindow();
    try {
      // An empty ADMIN_TOKEN stops the stack right after the migration, before anything starts.
      const old = original
        .replace(/^CREDENTIALS=.*$/m, `CREDENTIALS='${PREVIOUS_CREDENTIALS}'`)
        .replace(/^ADMIN_TOKEN=.*$/m, 'ADMIN_TOKEN=');
      writeFileSync(file, old, { mode: 0o600 });
      const err = await run(`npm run --silent dev -- --base-port ${base}`, { cwd: copy, timeout: 60_000 }).then(
        () => undefined,
        (e: { code: number; stdout: string; stderr: string }) => e,
      );
      expect(err?.code).toBe(1);
      expect(err!.stdout).toMatch(/^updated CREDENTIALS in \.dev\.vars to keys\.example's: PROVIDER_API_KEY is delivered at egress now/m);
      const example = /^CREDENTIALS=.*$/m.exec(readFileSync(join(ROOT, 'keys.example'), 'utf8'))![0];
      expect(readFileSync(file, 'utf8')).toBe(old.replace(/^CREDENTIALS=.*$/m, example));
      expect(statSync(file).mode & 0o077).toBe(0);
      for (const d of [0, 1, 2, 3, 4, 5]) expect(await portFree(base + d)).toBe(true);
    } finally {
      writeFileSync(file, original);
    }
  }, 90_000);

  it('an existing .dev.vars is never overwritten', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'issuer-devvars-'));
    try {
      const { ensureDevVars } = (await import(
        /* @vite-ignore */ `${ROOT}scripts/local-stack/dev-vars.ts`
      )) as typeof import('../../scripts/local-stack/dev-vars.js');
      writeFileSync(join(dir, '.dev.vars'), 'ADMIN_TOKEN=mine\n');
      expect(ensureDevVars(join(dir, '.dev.vars'), `${ROOT}keys.example`)).toBe(false);
      expect(readFileSync(join(dir, '.dev.vars'), 'utf8')).toBe('ADMIN_TOKEN=mine\n');

      expect(ensureDevVars(join(dir, 'new.vars'), `${ROOT}keys.example`)).toBe(true);
      const a = readFileSync(join(dir, 'new.vars'), 'utf8');
      expect(ensureDevVars(join(dir, 'other.vars'), `${ROOT}keys.example`)).toBe(true);
      const b = readFileSync(join(dir, 'other.vars'), 'utf8');
      const token = (t: string) => /^ADMIN_TOKEN=(.*)$/m.exec(t)![1];
      expect(token(a)).not.toBe(token(b));
      expect(a).toMatch(/^ISSUER=http:\/\/127\.0\.0\.1:8787$/m);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
