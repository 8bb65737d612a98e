/**
 * The whole chain against the REAL gateway, as `npm run dev -- --gateway openclaw` runs it: the
 * Worker in wrangler dev (DEV_USER) -> the verifying proxy -> OpenClaw in trusted-proxy mode -> the
 * stand-in model provider (issue 13, "Must show"). One stack for the file (openclaw-chain.ts),
 * shared by every test; what the gateway saw is read from the gateway itself: its presence list
 * (`system-presence`), its own log, its answers, and the kernel's view of its sockets.
 *
 * Fails, never skips, without .gateway/ under CI or REQUIRE_REAL_GATEWAY=1 (real-gateway.ts).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import { generateKeyPair, SignJWT } from 'jose';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import WebSocket from 'ws';
import { FIXED_REPLY, keyFingerprint } from '../../scripts/local-stack/model-provider.js';
import { FULL_OPERATOR_SCOPES } from '../../scripts/local-stack/openclaw-gateway.js';
import { MARKER_ENV } from '../../scripts/local-stack/processes.js';
import { type CredentialsFile, DEV_VARS_FILE, parseDotenv } from '../../src/admin-api.js';
import { type OpenClawStack, processes, STACK_UP_MS, startOpenClawStack } from './openclaw-chain.js';
import { assertRealGateway, GATEWAY_PROBLEM, itRealGateway } from './real-gateway.js';
import { ROOT } from './worker-process.js';

const execFileP = promisify(execFile);
/** keys.example's DEV_USER, which the stack's fresh .dev.vars carries. */
const DEV_USER = 'dev@localhost';
/** The Worker's address for every local client (LOCAL_CLIENT_IP, src/issuer/client-ip.ts). */
const LOCAL_CLIENT_IP = '192.0.2.1';
/** The gateway's WebSocket protocol version (MOLTWORKER.md, OpenClaw 2026.9.6). */
const PROTOCOL = 4;
/** The CLI starts its own Node process (2 to 3 s), then connects through the chain. */
const CLI_MS = 60_000;
/** OpenClaw's first chat completion: 20 to 30 s measured on two shared cores (an agent run). */
const COMPLETION_MS = 180_000;
/** The Control UI's bundle, then its WebSocket through the chain and device enrolment. */
const BROWSER_MS = 120_000;
/** How long a request the proxy refused gets to reach the gateway anyway, if it were forwarded. */
const SETTLE_MS = 1_000;
/** OpenClaw writes its log file asynchronously: a line can land after the answer it belongs to. */
const LOG_LAG_MS = 10_000;
/** The stand-in model's display name in openclaw.json (scripts/local-stack/openclaw-gateway.ts). */
const MODEL_NAME = 'Stand-in model (fixed reply)';
/** A JWT anywhere in a string (a header segment starts with eyJ, "{"). */
const JWT = /eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}/;
/** Where .ci/run keeps test output (git-ignored). */
const RESULTS_DIR = join(ROOT, '.test-results');
/**
 * Debian's `chromium` from PATH (apt-get install chromium; .ci/run installs it when missing);
 * CHROMIUM names another binary. No browser download: playwright-core only drives it.
 */
const CHROMIUM_NAME = 'chromium';
/** What headless Chromium needs as root in a container with no GPU; and no calls home. */
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking'];

/** Every client-identity header a client could forge, with values that would change the outcome. */
const FORGED = {
  'X-Forwarded-User': 'mallory@evil.example',
  'X-Forwarded-For': '127.0.0.1',
  'X-Real-IP': '203.0.113.67',
  Forwarded: 'for=203.0.113.68;proto=https;by=203.0.113.69',
  'x-openclaw-scopes': 'operator.pairing',
};

let stack: OpenClawStack;

/** Waits until OpenClaw's own log has a line with `text` (see LOG_LAG_MS). */
async function logged(text: string): Promise<boolean> {
  const deadline = Date.now() + LOG_LAG_MS;
  while (Date.now() < deadline) {
    if (stack.gatewayLog().includes(text)) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

function chromiumPath(): string {
  if (process.env.CHROMIUM) return process.env.CHROMIUM;
  for (const d of (process.env.PATH ?? '').split(delimiter)) {
    const p = join(d, CHROMIUM_NAME);
    if (d && existsSync(p)) return p;
  }
  throw new Error(`no ${CHROMIUM_NAME} on PATH: apt-get install chromium (.ci/run does), or set CHROMIUM`);
}

interface Frame {
  type: string;
  id?: string;
  ok?: boolean;
  event?: string;
  payload?: any;
  error?: any;
}

/** OpenClaw's protocol over `ws`: connect.challenge -> connect -> hello-ok, then requests. */
class GatewayClient {
  private n = 0;
  private waiting = new Map<string, (f: Frame) => void>();
  private challenge: Promise<void>;
  hello?: Frame;

  private constructor(readonly ws: WebSocket) {
    // Listening from the start: the challenge can come in the same read as the 101 answer, before
    // any code after `open` runs.
    this.challenge = new Promise((resolve) => {
      ws.on('message', (d) => {
        const f = JSON.parse(d.toString()) as Frame;
        if (f.type === 'event' && f.event === 'connect.challenge') resolve();
        if (f.type === 'res' && f.id) this.waiting.get(f.id)?.(f);
      });
    });
  }

  static async open(url: string, headers: Record<string, string>, instanceId: string): Promise<GatewayClient> {
    const c = new GatewayClient(new WebSocket(url, { headers }));
    await new Promise<void>((resolve, reject) => {
      c.ws.once('open', () => resolve());
      c.ws.once('unexpected-response', (_req, res) => reject(new Error(`WebSocket upgrade answered ${res.statusCode}`)));
      c.ws.once('error', reject);
    });
    await c.challenge;
    // Mode `test`: the gateway keeps test clients in its presence list (cli/backend/probe it leaves out).
    const hello = await c.call('connect', {
      minProtocol: PROTOCOL,
      maxProtocol: PROTOCOL,
      client: { id: 'test', version: '1.0.0', platform: 'linux', mode: 'test', instanceId },
      role: 'operator',
      // Asks for read only: whatever it gets beyond that comes from identityScopes, not from the client.
      scopes: ['operator.read'],
    });
    if (!hello.ok) throw new Error(`connect refused: ${JSON.stringify(hello.error)}`);
    c.hello = hello;
    return c;
  }

  call(method: string, params: unknown): Promise<Frame> {
    const id = String(++this.n);
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.ws.send(JSON.stringify({ type: 'req', id, method, params }));
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.ws.readyState === WebSocket.CLOSED) return resolve();
      this.ws.once('close', () => resolve());
      this.ws.close();
    });
  }
}

/**
 * Every TCP connection to or from the gateway's port (any state but LISTEN), from the kernel
 * (`ss`), with the bytes the gateway side received: a closed connection stays in TIME-WAIT on one
 * side for a minute, so a request forwarded and finished in the meantime still shows.
 */
async function gatewaySockets(port: number): Promise<Map<string, number>> {
  const { stdout } = await execFileP('ss', ['-Htani', `( sport = :${port} or dport = :${port} )`]);
  const out = new Map<string, number>();
  let last = '';
  for (const line of stdout.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (/^[A-Z-]+$/.test(f[0] ?? '') && f.length >= 5) {
      if (f[0] === 'LISTEN') {
        last = '';
        continue;
      }
      last = `${f[0]} ${f[3]} ${f[4]}`;
      out.set(last, 0);
    } else if (last) {
      out.set(last, Number(/bytes_received:(\d+)/.exec(line)?.[1] ?? 0));
    }
  }
  return out;
}

beforeAll(async () => {
  if (GATEWAY_PROBLEM !== undefined) return; // each test fails (or is skipped) on its own
  stack = await startOpenClawStack();
  console.log(`stack with the real gateway up in ${stack.upSeconds.toFixed(1)} s`);
}, STACK_UP_MS + 60_000);

afterAll(async () => {
  if (!stack) return;
  const { exit, leftovers } = await stack.stop();
  // Ctrl-C stops the stack, OpenClaw and its spawn broker included; nothing of it is left.
  expect(['exit 0', 'SIGINT']).toContain(exit);
  expect(leftovers).toEqual([]);
}, 90_000);

describe('the real gateway through the whole chain (npm run dev -- --gateway openclaw)', () => {
  itRealGateway(
    'the real CLI, run as the stack prints it, calls health and status through the chain with no token',
    async () => {
      assertRealGateway();
      // The printed command: a CLI profile names the Worker (OpenClaw 2026.9.6 refuses --url without
      // --token or --password, client-side), --expect-url pins it there.
      expect(stack.cliCommand).toBe(
        `OPENCLAW_STATE_DIR=.dev-stack/openclaw-cli .gateway/bin/openclaw gateway call health --expect-url ws://127.0.0.1:${stack.base} --json`,
      );
      expect(stack.cliCommand).not.toMatch(/--token|--password|token=/);
      const profile = readFileSync(join(stack.dir, '.dev-stack', 'openclaw-cli', 'openclaw.json'), 'utf8');
      expect(profile).not.toMatch(/token|password/i);
      const connectsBefore = stack
        .gatewayLog()
        .split('\n')
        .filter((l) => l.includes(`authenticated user connected`)).length;

      // Exactly as printed, from a plain shell: none of the test runner's variables (OpenClaw reads
      // VITEST and NODE_ENV=test as its own test mode) and no OPENCLAW_* (an exported token is used).
      const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', LANG: process.env.LANG ?? 'C.UTF-8' };
      const health = await execFileP('sh', ['-c', stack.cliCommand], { cwd: stack.dir, env, timeout: CLI_MS });
      expect(health.stdout, health.stderr).toMatch(/^\s*\{/);
      expect(JSON.parse(health.stdout)).toMatchObject({ ok: true });
      // status needs operator.read: DEV_USER has it from identityScopes, through the chain.
      const status = await execFileP('sh', ['-c', stack.cliCommand.replace(' call health ', ' call status ')], {
        cwd: stack.dir,
        env,
        timeout: CLI_MS,
      });
      expect(JSON.parse(status.stdout)).toMatchObject({ runtimeVersion: expect.any(String) });

      // The gateway itself logged both connections as DEV_USER's.
      const connected = () =>
        stack
          .gatewayLog()
          .split('\n')
          .filter((l) => l.includes('authenticated user connected'));
      const deadline = Date.now() + LOG_LAG_MS;
      while (connected().length - connectsBefore < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      const connects = connected().slice(connectsBefore);
      expect(connects.length).toBe(2);
      for (const l of connects) expect(l).toContain(`user=${DEV_USER}`);
    },
    2 * CLI_MS,
  );

  itRealGateway(
    "a WebSocket client with forged identity headers is DEV_USER at 192.0.2.1 with its configured scopes, in the gateway's presence list",
    async () => {
      assertRealGateway();
      const instanceId = `forged-${Date.now()}`;
      const c = await GatewayClient.open(`${stack.issuer.replace(/^http/, 'ws')}/`, FORGED, instanceId);
      try {
        const presence = await c.call('system-presence', {});
        expect(presence.ok).toBe(true);
        const me = (presence.payload as any[]).find((e) => e.instanceId === instanceId);
        expect(me).toBeDefined();
        expect(me.user.email).toBe(DEV_USER);
        expect(me.ip).toBe(LOCAL_CLIENT_IP);
        expect([...me.scopes].sort()).toEqual([...FULL_OPERATOR_SCOPES].sort());
        expect(JSON.stringify(presence.payload)).not.toMatch(/mallory|203\.0\.113\./);
        // Its own log names the connection's user too.
        const connId = c.hello!.payload.server.connId as string;
        expect(await logged(`authenticated user connected conn=${connId} user=${DEV_USER}`)).toBe(true);
      } finally {
        await c.close();
      }
    },
    60_000,
  );

  itRealGateway(
    "an HTTP client with forged identity headers is still DEV_USER at the Worker's address: each header would have changed the gateway's answer",
    async () => {
      assertRealGateway();
      const proxied = {
        'X-Forwarded-User': DEV_USER,
        'X-Forwarded-For': LOCAL_CLIENT_IP,
        'X-Forwarded-Proto': 'http',
        'X-Forwarded-Host': `127.0.0.1:${stack.base}`,
      };
      // The control: the same gateway, sent the headers a verifying proxy sends plus one forged header
      // as if a proxy had let it through, refuses (a user not in allowUsers, a loopback client, scopes
      // narrowed below what /v1/models needs).
      const refusedIfPassed: Array<[string, string, number]> = [
        ['X-Forwarded-User', FORGED['X-Forwarded-User'], 401],
        ['X-Forwarded-For', FORGED['X-Forwarded-For'], 403],
        ['x-openclaw-scopes', FORGED['x-openclaw-scopes'], 403],
      ];
      for (const [name, value, code] of refusedIfPassed) {
        const direct = await fetch(`${stack.gateway}/v1/models`, { headers: { ...proxied, [name]: value } });
        expect([name, direct.status]).toEqual([name, code]);
      }
      // Through the Worker, with all of them and the other two: the gateway answers as for DEV_USER.
      const res = await fetch(`${stack.issuer}/v1/models`, { headers: FORGED });
      expect(res.status).toBe(200);
      expect(((await res.json()) as { object: string }).object).toBe('list');
      // And each on its own.
      for (const [name, value] of Object.entries(FORGED)) {
        const one = await fetch(`${stack.issuer}/v1/models`, { headers: { [name]: value } });
        expect([name, one.status]).toEqual([name, 200]);
        await one.text();
      }
    },
    60_000,
  );

  itRealGateway(
    'a missing, bad or expired token is refused by the proxy, and nothing reaches the gateway',
    async () => {
      assertRealGateway();
      // The keys the proxy trusts: a token signed by another key under the issuer's own kid.
      const jwks = (await (await fetch(`${stack.issuer}/.well-known/jwks.json`)).json()) as { keys: Array<{ kid: string; alg: string }> };
      const { kid, alg } = jwks.keys[0]!;
      const { privateKey } = await generateKeyPair(alg, { crv: 'Ed25519' });
      const claims = { sub: DEV_USER, scope: 'gateway', client_ip: LOCAL_CLIENT_IP };
      const now = Math.floor(Date.now() / 1000);
      const signed = (iat: number, exp: number) =>
        new SignJWT(claims)
          .setProtectedHeader({ alg, kid, typ: 'JWT' })
          .setIssuer(stack.issuer)
          .setAudience('gateway:main')
          .setIssuedAt(iat)
          .setExpirationTime(exp)
          .sign(privateKey);
      const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
      // The agent's own token: the issuer's signature, but scope agent (never a gateway token).
      const agentToken = readFileSync(join(stack.dir, '.dev-stack', 'agent', 'token'), 'utf8').trim();
      const tokens: Record<string, string | undefined> = {
        missing: undefined,
        'not a JWT': 'not-a-token',
        'forged signature': await signed(now, now + 300),
        expired: await signed(now - 3600, now - 1800),
        'alg none': `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ ...claims, iss: stack.issuer, aud: 'gateway:main', exp: now + 300 })}.`,
        'agent token': agentToken,
      };

      const logBefore = stack.gatewayLog();
      const before = await gatewaySockets(stack.gatewayPort);
      const wsUrl = `${stack.proxy.replace(/^http/, 'ws')}/`;
      for (const [what, token] of Object.entries(tokens)) {
        const headers: Record<string, string> = token === undefined ? {} : { Authorization: `Bearer ${token}` };
        for (const path of ['/', '/v1/models']) {
          const res = await fetch(`${stack.proxy}${path}`, { headers });
          expect([what, path, res.status]).toEqual([what, path, 401]);
          expect(await res.text()).not.toContain('<html');
        }
        const chat = await fetch(`${stack.proxy}/v1/chat/completions`, {
          method: 'POST',
          headers: { ...headers, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'openclaw', messages: [{ role: 'user', content: 'hello' }] }),
        });
        expect([what, 'chat', chat.status]).toEqual([what, 'chat', 401]);
        await chat.text();
        const upgrade = await new Promise<number>((resolve, reject) => {
          const ws = new WebSocket(wsUrl, { headers });
          ws.once('unexpected-response', (_req, res) => {
            resolve(res.statusCode ?? 0);
            ws.terminate();
          });
          ws.once('open', () => {
            ws.terminate();
            resolve(101);
          });
          ws.once('error', reject);
        });
        expect([what, 'websocket', upgrade]).toEqual([what, 'websocket', 401]);
      }
      await new Promise((r) => setTimeout(r, SETTLE_MS));

      // The gateway side: no new TCP connection to its port (in any state), no byte received on one
      // that was open, and nothing new in its own log.
      const after = await gatewaySockets(stack.gatewayPort);
      const changed = [...after].filter(([k, bytes]) => !before.has(k) || before.get(k) !== bytes).map(([k]) => k);
      expect(changed).toEqual([]);
      expect(stack.gatewayLog().slice(logBefore.length)).toBe('');
      // The check can see a forwarded request: the same through the Worker adds a connection.
      const through = await fetch(`${stack.issuer}/v1/models`);
      expect(through.status).toBe(200);
      await through.text();
      const seen = await gatewaySockets(stack.gatewayPort);
      expect([...seen].filter(([k, bytes]) => !after.has(k) || after.get(k) !== bytes).length).toBeGreaterThan(0);
    },
    120_000,
  );

  itRealGateway(
    'GET / through the Worker serves the real Control UI',
    async () => {
      assertRealGateway();
      expect(stack.uiUrl).toBe(`${stack.issuer}/`);
      const res = await fetch(stack.uiUrl);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/html/);
      const html = await res.text();
      expect(html).toContain('<title>OpenClaw Control</title>');
      expect(html).toMatch(/data-openclaw-control-ui-build-id="2026\.9\.6-/);
      // The very page the gateway serves on its own port.
      expect(await (await fetch(`${stack.gateway}/`)).text()).toBe(html);
    },
    60_000,
  );

  itRealGateway(
    'headless Chromium: the Control UI from the Worker gets hello-ok over its WebSocket through the chain; no URL it requested carries a token',
    async () => {
      assertRealGateway();
      const browser = await chromium.launch({ executablePath: chromiumPath(), args: CHROMIUM_ARGS, headless: true });
      const urls: string[] = [];
      const wsUrls: string[] = [];
      try {
        const page = await browser.newPage();
        page.on('request', (r) => urls.push(r.url()));
        const connected = new Promise<{ url: string; hello: any }>((resolve) => {
          page.on('websocket', (ws) => {
            wsUrls.push(ws.url());
            ws.on('framereceived', (f) => {
              const text = typeof f.payload === 'string' ? f.payload : f.payload.toString();
              if (!text.includes('"hello-ok"')) return;
              const m = JSON.parse(text) as Frame;
              if (m.type === 'res' && m.ok && m.payload?.type === 'hello-ok') resolve({ url: ws.url(), hello: m.payload });
            });
          });
        });
        await page.goto(stack.uiUrl, { waitUntil: 'domcontentloaded', timeout: BROWSER_MS });
        const { url, hello } = await Promise.race([
          connected,
          new Promise<never>((_r, reject) =>
            setTimeout(() => reject(new Error(`no hello-ok on the page's WebSocket; WebSockets: ${wsUrls.join(', ')}`)), BROWSER_MS),
          ),
        ]);
        // Same origin as the page: the Worker, not the gateway's own port.
        expect(new URL(url).host).toBe(`127.0.0.1:${stack.base}`);
        expect(hello.server.version).toBe('2026.9.6');
        // The gateway logged the page's connection as DEV_USER's.
        expect(await logged(`authenticated user connected conn=${hello.server.connId} user=${DEV_USER}`)).toBe(true);
        // The connected screen: the model picker names the stand-in model, which the UI only knows
        // from the gateway's model list, fetched over that WebSocket.
        await page.getByText(MODEL_NAME).first().waitFor({ state: 'visible', timeout: BROWSER_MS });
        mkdirSync(RESULTS_DIR, { recursive: true });
        const shot = join(RESULTS_DIR, 'openclaw-control-ui.png');
        await page.screenshot({ path: shot, fullPage: false });
        expect(statSync(shot).size).toBeGreaterThan(1_000);
      } finally {
        await browser.close();
      }
      // The browser's own network log: every request and WebSocket URL, none with a token.
      const all = [...urls, ...wsUrls];
      expect(urls.length).toBeGreaterThan(0);
      expect(wsUrls.length).toBeGreaterThan(0);
      expect(all.filter((u) => /token=/i.test(u) || JWT.test(u))).toEqual([]);
    },
    BROWSER_MS + 60_000,
  );

  itRealGateway(
    "a chat completion through the whole chain returns the stand-in provider's reply",
    async () => {
      assertRealGateway();
      const started = Date.now();
      expect(await chatCompletion('hello')).toBe(FIXED_REPLY);
      console.log(`chat completion through the chain: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    },
    COMPLETION_MS + 30_000,
  );

  itRealGateway(
    'egress delivery: the completion reached the provider carrying the real key, which the container side holds nowhere; only the sentinel',
    async () => {
      assertRealGateway();
      const realKey = devVar(stack.dir, 'STANDIN_PROVIDER_KEY');
      expect(realKey.length).toBeGreaterThanOrEqual(32);
      const credentials = JSON.parse(readFileSync(join(stack.dir, '.dev-stack', 'agent', 'credentials.json'), 'utf8')) as CredentialsFile;
      const sentinel = credentials.values.PROVIDER_API_KEY!;
      expect(JSON.parse(Buffer.from(sentinel.split('.')[0]!, 'base64url').toString())).toMatchObject({ typ: 'egress+jwt' });

      // A completion (the previous test's, and this one) reached the stand-in provider with the real
      // key: it accepts nothing else, and logs the fingerprint of the key it saw, never the sentinel's.
      expect(await chatCompletion('hello again')).toBe(FIXED_REPLY);
      const providerLog = readFileSync(join(stack.dir, '.dev-stack', 'logs', 'model-provider.log'), 'utf8');
      expect(providerLog).toMatch(new RegExp(`POST /v1/chat/completions key ${keyFingerprint(realKey)}: accepted`));
      expect(providerLog).not.toContain(keyFingerprint(sentinel));

      // Everything the container side holds: every file under the agent's directory and the
      // gateway's home, every log of the stack, and the environment and command line of every
      // container-side process (the agent, the proxy, the gateway and whatever they started).
      const needle = Buffer.from(realKey);
      const found: string[] = [];
      const sentinelIn: string[] = [];
      const search = (what: string, bytes: Buffer) => {
        if (bytes.includes(needle)) found.push(what);
        if (bytes.includes(Buffer.from(sentinel))) sentinelIn.push(what);
      };
      let files = 0;
      const walk = (d: string) => {
        for (const e of readdirSync(d, { withFileTypes: true })) {
          const p = join(d, e.name);
          if (e.isDirectory()) walk(p);
          else if (e.isFile()) {
            files++;
            search(p.slice(stack.dir.length + 1), readFileSync(p));
          }
        }
      };
      for (const d of ['agent', 'openclaw-home', 'logs']) walk(join(stack.dir, '.dev-stack', d));
      const logs = readdirSync(join(stack.dir, '.dev-stack', 'logs'));
      expect(logs).toEqual(
        expect.arrayContaining([
          'agent.log',
          'proxy.log',
          'gateway.log',
          'openclaw.jsonl',
          'issuer.log',
          'model-provider.log',
          'egress-hop.log',
        ]),
      );
      search('npm run dev output', Buffer.from(stack.output()));
      const home = join(stack.dir, '.dev-stack', 'openclaw-home');
      const containerSide = processes().filter(
        (p) => p.env.includes(`HOME=${home}`) || p.env.some((e) => new RegExp(`^${MARKER_ENV}=\\d+:(agent|proxy|gateway)$`).test(e)),
      );
      const names = containerSide.map((p) => p.cmd).join('\n');
      expect(names).toMatch(/refresh\.ts/);
      expect(names).toMatch(/gateway-proxy\.ts/);
      expect(names).toMatch(/openclaw/);
      for (const p of containerSide) {
        search(`/proc/${p.pid}/environ (${p.cmd.slice(0, 60)})`, Buffer.from(p.environ));
        search(`/proc/${p.pid}/cmdline (${p.cmd.slice(0, 60)})`, Buffer.from(p.cmdline));
      }
      console.log(
        `searched ${files} files and ${containerSide.length} container-side processes for the real provider key: found in ${found.length}; the sentinel in ${sentinelIn.join(', ')}`,
      );
      expect(found).toEqual([]);
      expect(sentinelIn).toContain('.dev-stack/agent/credentials.json');
      // The model provider never saw the sentinel: it logs nothing but fingerprints, and none is the sentinel's.
    },
    COMPLETION_MS + 60_000,
  );
});

/** One chat completion through the whole chain (Worker -> proxy -> OpenClaw -> egress -> provider): its reply. */
async function chatCompletion(content: string): Promise<string> {
  const res = await fetch(`${stack.issuer}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'openclaw', messages: [{ role: 'user', content }] }),
    signal: AbortSignal.timeout(COMPLETION_MS),
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { choices: Array<{ message: { content: string } }> }).choices[0]!.message.content;
}

/** A value of the stack's .dev.vars (written by the stack from keys.example with fresh secrets). */
function devVar(dir: string, name: string): string {
  const value = parseDotenv(readFileSync(join(dir, DEV_VARS_FILE), 'utf8'))[name];
  if (value === undefined) throw new Error(`${DEV_VARS_FILE} has no ${name}`);
  return value;
}
