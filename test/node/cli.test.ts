/**
 * credctl against a real issuer (wrangler dev), run as the built bundle in child processes: each
 * command's human and --json output, every exit code, the bootstrap file's safety rules, token
 * inspect on a real agent token and on a real egress sentinel, and that no output ever carries the
 * admin token, a secret value, the encrypted credentials, a sentinel's signature or a private key. Small local servers stand in where the issuer cannot: Access
 * service-token headers, an answer that is not the API, a hung issuer.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditTable, duration, refusalTable, relative, sandboxDetail, statusScreen, timeline } from '../../cli/format.js';
import { COMMANDS, GROUPS, synopsis } from '../../cli/registry.js';
import { TEST_ADMIN_TOKEN, TEST_GATEWAY_TOKEN } from '../secrets.js';
import { agentToken, buildCli, type CliRun, type IssuedBootstrapFile, issuedBootstrapFile, runProcess } from './cli-process.js';
import { freePort, ROOT, startWorker, type WorkerProcess } from './worker-process.js';

const dir = mkdtempSync(join(tmpdir(), 'credctl-'));
/** The CLI's working directory: no .dev.vars here unless a test writes one elsewhere. */
const work = join(dir, 'work');
mkdirSync(work);
let worker: WorkerProcess;
let bundle: string;

const ACCESS_SECRET = 'access-secret-for-the-test-0123456789';
/** The Worker secret behind the egress-delivered entry: the outbound handler's to add, never shown. */
const PROVIDER_SECRET = 'provider-secret-for-the-test-0123456789';
/** Every secret a run might hold; none may reach stdout or stderr. */
const NEVER_SHOWN = [TEST_ADMIN_TOKEN, ACCESS_SECRET, PROVIDER_SECRET, TEST_GATEWAY_TOKEN];
/** wrangler.toml's derived entry, and one egress-delivered entry bound to localhost. */
const CREDENTIALS = {
  GATEWAY_TOKEN: { secret: 'MOLTBOT_GATEWAY_TOKEN', derive: true },
  PROVIDER_API_KEY: { secret: 'PROVIDER_SECRET', egress: { hosts: ['localhost'], header: 'authorization' } },
};

beforeAll(async () => {
  const vars = { CREDENTIALS: JSON.stringify(CREDENTIALS), PROVIDER_SECRET };
  [worker, bundle] = await Promise.all([startWorker({ persistTo: join(dir, 'state'), vars }), buildCli(join(dir, 'cli'))]);
}, 90_000);
afterAll(async () => {
  await worker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

interface CliOptions {
  /** Extra environment; ISSUER_URL and ADMIN_TOKEN are set unless `admin` is false. */
  env?: Record<string, string>;
  admin?: boolean;
  input?: string;
  cwd?: string;
}

async function cli(args: string[], opts: CliOptions = {}): Promise<CliRun> {
  const env = { ISSUER_URL: worker.url, ...(opts.admin === false ? {} : { ADMIN_TOKEN: TEST_ADMIN_TOKEN }), ...opts.env };
  const r = await runProcess(process.execPath, [bundle, ...args], { cwd: opts.cwd ?? work, env, input: opts.input });
  for (const s of NEVER_SHOWN) expect(r.stdout + r.stderr).not.toContain(s);
  expect(r.stderr).not.toMatch(/\n\s+at /); // never a stack trace
  return r;
}

/** One error line on stderr, nothing on stdout. */
function failsWith(r: CliRun, code: number, line: RegExp): void {
  expect({ code: r.code, stdout: r.stdout }).toEqual({ code, stdout: '' });
  expect(r.stderr.split('\n')).toHaveLength(2); // one line and its newline
  expect(r.stderr).toMatch(/^credctl: /);
  expect(r.stderr.trimEnd()).toMatch(line);
}

async function admin(method: string, path: string): Promise<Response> {
  return fetch(`${worker.url}/api/admin${path}`, { method, headers: { Authorization: `Bearer ${TEST_ADMIN_TOKEN}` } });
}

function b64(v: unknown): string {
  return Buffer.from(JSON.stringify(v)).toString('base64url');
}

describe('format', () => {
  const now = Date.parse('2026-05-01T12:00:00Z');
  const iso = (ms: number) => new Date(now + ms).toISOString();
  const H = 3_600_000;

  it('durations and relative times', () => {
    expect([duration(45_000), duration(12 * 60_000), duration(3 * H + 5 * 60_000), duration(50 * H)]).toEqual([
      '45s',
      '12m',
      '3h 5m',
      '2d 2h',
    ]);
    expect([relative(now + 5 * 60_000, now), relative(now - 90_000, now), relative(now + 400, now)]).toEqual(['in 5m', '1m ago', 'now']);
  });

  it('the key timeline: signing, published, the rotation and the removal on one axis', () => {
    // The axis runs to 23 h (20 h to the rotation + 15%): 47 columns, the rotation at column 41,
    // the removal at column 6; the retiring key's 4 h retention keeps the active key published past the end.
    const listing = {
      keys: [
        { kid: 'a'.repeat(43), state: 'active' as const, created_at: iso(-2 * H), activated_at: iso(-H) },
        { kid: 'n'.repeat(43), state: 'next' as const, created_at: iso(-H) },
        { kid: 'r'.repeat(43), state: 'retiring' as const, created_at: iso(-3 * H), retired_at: iso(-H), remove_at: iso(3 * H) },
      ],
      schedule: { rotation_period_seconds: 24 * 3600, next_rotation_at: iso(20 * H), earliest_manual_rotation_at: iso(-H) },
    };
    expect(timeline(listing, now)).toEqual([
      '            now                        rotation in 20h',
      '  active    =========================================|------',
      '  next      -----------------------------------------|======',
      '  retiring  ------x',
      '            = signs  - published, verifies only  | scheduled rotation  x leaves the JWKS',
    ]);
  });

  const deliveries = [
    { name: 'GATEWAY_TOKEN', delivery: 'derived' as const },
    { name: 'PLAIN_KEY', delivery: 'value' as const },
    { name: 'PROVIDER_API_KEY', delivery: 'egress' as const, hosts: ['api.example.com', 'eu.api.example.com'], header: 'x-api-key' },
  ];
  const deliveryLine = 'GATEWAY_TOKEN derived, PLAIN_KEY value, PROVIDER_API_KEY egress -> api.example.com eu.api.example.com (x-api-key)';
  const sandbox = {
    sandbox: 'sb-1',
    exists: true,
    revoked: false,
    agent_key_registered: true,
    credentials_version: 'v1',
    credentials: deliveries,
  };
  const keys = {
    keys: [],
    schedule: { rotation_period_seconds: 86_400, next_rotation_at: iso(20 * H), earliest_manual_rotation_at: iso(-H) },
  };

  it('status and sandbox status say how each CREDENTIALS entry is delivered; an issuer that does not say shows no line', () => {
    const screen = statusScreen('https://issuer.example', keys, [sandbox], now);
    expect(screen[2]).toBe(`credentials  ${deliveryLine}`);
    expect(sandboxDetail(sandbox, now)).toContain(`delivery          ${deliveryLine}`);
    expect(statusScreen('https://issuer.example', keys, [{ ...sandbox, credentials: [] }], now)[2]).toBe(
      'credentials  (none: CREDENTIALS is empty)',
    );
    const older = { ...sandbox, credentials: undefined };
    expect(statusScreen('https://issuer.example', keys, [older], now).join('\n')).not.toMatch(/^credentials/m);
    expect(sandboxDetail(older, now).join('\n')).not.toMatch(/^delivery/m);
    // Issuer text is one line each: a host with a control character cannot start a new line.
    const odd = {
      ...sandbox,
      credentials: [{ name: 'K', delivery: 'egress' as const, hosts: ['a.example\nforged line'], header: 'authorization' }],
    };
    expect(sandboxDetail(odd, now).at(-1)).toBe('delivery          K egress -> a.example forged line (authorization)');
  });

  it('audit: an egress:<rule> refusal reads "egress refused: <rule>", with a line saying what that is', () => {
    const minute = '2026-05-01T11:59:00.000Z';
    const refusals = [
      { minute, last_at: minute, sandbox: 'sb-1', code: 'egress:host_not_bound', authenticated: true, count: 2 },
      { minute, last_at: minute, sandbox: 'sb-1', code: 'replayed_jti', authenticated: true, count: 1 },
    ];
    expect(refusalTable(refusals)).toEqual([
      'MINUTE                SANDBOX  CODE                            COUNT  SIGNED',
      '2026-05-01T11:59:00Z  sb-1     egress refused: host_not_bound  2      yes',
      '2026-05-01T11:59:00Z  sb-1     replayed_jti                    1      yes',
      'egress refused: the outbound handler refused a sentinel in a request from the sandbox to an egress host (the rule after the colon; README, "Egress delivery")',
    ]);
    // Token-request refusals alone: no egress line.
    expect(refusalTable([refusals[1]!])).toHaveLength(2);
    expect(auditTable([{ at: minute, sandbox: 'sb-1', event: 'x', outcome: 'refused', code: 'egress:revoked' }])[1]).toContain(
      'egress refused: revoked',
    );
  });
});

describe('usage', () => {
  it('prints its version and help; the help documents every exit code', async () => {
    const pkg = JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as { version: string };
    expect(await cli(['--version'])).toEqual({ code: 0, stdout: `credctl ${pkg.version}\n`, stderr: '' });

    const help = await cli(['--help']);
    expect(help.code).toBe(0);
    for (const c of [
      'status',
      'keys list',
      'keys rotate',
      'keys revoke',
      'sandbox bootstrap',
      'sandbox revoke',
      'sandbox refresh',
      'gateway restart',
      'audit',
      'token inspect',
    ])
      expect(help.stdout).toContain(c);
    for (const line of [
      /^ {2}0 {2}ok$/m,
      /^ {2}1 {2}the issuer answered with an error/m,
      /^ {2}2 {2}usage or bad input/m,
      /^ {2}3 {2}not authorized/m,
      /^ {2}4 {2}the issuer is unreachable/m,
      /^ {2}5 {2}token inspect/m,
    ]) {
      expect(help.stdout).toMatch(line);
    }
    const rotate = await cli(['keys', 'rotate', '-h']);
    expect(rotate.code).toBe(0);
    expect(rotate.stdout).toMatch(/^usage: credctl keys rotate \[--force\]/);
    const group = await cli(['help', 'sandbox']);
    expect(group.stdout).toMatch(/^usage: credctl sandbox <list\|status\|bootstrap\|revoke\|refresh>/);
  });

  it('one registry: each command of the table is in the help with its usage line, has its own help, and is the one the dispatcher runs', async () => {
    const names = COMMANDS.map((c) => c.name);
    expect(new Set(names).size).toBe(names.length);
    expect(GROUPS).toEqual(['keys', 'sandbox', 'gateway', 'token']);
    // A flag two commands share is the same kind of flag in both (parseArgs knows it once).
    const kinds = new Map<string, string | undefined>();
    for (const f of COMMANDS.flatMap((c) => c.flags)) {
      if (kinds.has(f.name)) expect([f.name, f.value]).toEqual([f.name, kinds.get(f.name)]);
      kinds.set(f.name, f.value);
    }
    const help = (await cli(['--help'])).stdout;
    for (const c of COMMANDS) {
      const head = `${c.name}${synopsis(c) ? ` ${synopsis(c)}` : ''}`;
      expect(help).toContain(`\n  ${head.padEnd(37)}${c.summary}\n`);
      const own = await cli([...c.name.split(' '), '--help']);
      expect([c.name, own.code, own.stdout.split('\n')[0]]).toEqual([c.name, 0, `usage: credctl ${head} [global options]`]);
      // The dispatcher takes exactly the arguments the usage line names.
      const extra = await cli([...c.name.split(' '), ...c.args.map(() => 'x'), 'x']);
      failsWith(extra, 2, new RegExp(`^credctl: credctl ${c.name}: too many arguments`));
    }
  });

  it.each([
    [[], /^credctl: missing command; see credctl --help$/],
    [['frobnicate'], /^credctl: unknown command "frobnicate"; see credctl --help$/],
    [['keys'], /^credctl: missing keys command; see credctl keys --help$/],
    [['keys', 'list', '--bogus'], /^credctl: unknown option --bogus; see credctl --help$/],
    [['keys', 'list', '--force'], /^credctl: --force is not an option of credctl keys list/],
    [['sandbox', 'revoke'], /^credctl: credctl sandbox revoke: missing argument/],
    [['status', 'extra'], /^credctl: credctl status: too many arguments/],
    [['status', '--timeout', '0'], /^credctl: --timeout: must be a number of seconds/],
    [['status', '--issuer', 'ftp://x'], /^credctl: --issuer: must be an http\(s\) URL$/],
    [['sandbox', 'revoke', 'Bad_Id'], /^credctl: a sandbox id is 1 to 63 lowercase letters/],
    [['keys', 'revoke', 'short'], /^credctl: a kid is 43 base64url characters/],
    [['audit', '--limit', '501'], /^credctl: --limit: must be a whole number from 1 to 500$/],
    [['token', 'inspect', 'not-a-token'], /^credctl: malformed token: not a compact JWS/],
  ])('%j is a usage error: one line, exit 2', async (args, line) => {
    failsWith(await cli(args), 2, line);
  });

  it('never echoes a pasted token in a usage error', async () => {
    const fake = `${b64({ alg: 'EdDSA' })}.${b64({ sub: 'x' })}.c2lnbmF0dXJl`;
    const r = await cli([fake]);
    failsWith(r, 2, /^credctl: unknown command; see credctl --help$/);
    expect(r.stderr).not.toContain(fake.slice(0, 10));
  });

  it('the bin shim says how to build when the bundle is missing', async () => {
    const binDir = join(dir, 'unbuilt', 'bin');
    mkdirSync(binDir, { recursive: true });
    copyFileSync(`${ROOT}bin/credctl.mjs`, join(binDir, 'credctl.mjs'));
    const r = await runProcess(process.execPath, [join(binDir, 'credctl.mjs'), '--version'], { cwd: work });
    expect(r).toEqual({ code: 2, stdout: '', stderr: 'credctl: not built; run npm run build:cli\n' });
  });

  it('runs through the real bin wiring: npx --no-install credctl', async () => {
    await buildCli();
    const r = await runProcess('npx', ['--no-install', 'credctl', '--version'], { cwd: ROOT, timeoutMs: 60_000 });
    expect(r.stdout).toMatch(/^credctl \d+\.\d+\.\d+\n$/);
    expect(r.code).toBe(0);
  }, 60_000);
});

describe('against the issuer', () => {
  /** The bootstrap file of sandbox cli-a that is current (the last one issued). */
  let boot: IssuedBootstrapFile;
  let agent: { token: string; claims: Record<string, unknown> };

  it('sandbox bootstrap --out writes a 0600 file, never overwrites, and prints a one-line summary', async () => {
    const r = await cli(['sandbox', 'bootstrap', 'cli-a', '--out', 'boot.json']);
    expect(r.code).toBe(0);
    const file = issuedBootstrapFile(JSON.parse(readFileSync(join(work, 'boot.json'), 'utf8')));
    expect(file).toMatchObject({ client_id: 'cli-a', issuer: worker.url, key: { kty: 'OKP', crv: 'Ed25519' } });
    expect(statSync(join(work, 'boot.json')).mode & 0o777).toBe(0o600);
    expect(r.stdout).toBe(
      `sandbox cli-a: bootstrap key ${file.key.kid.slice(0, 12)} written to boot.json (mode 0600); the previous bootstrap key no longer works\n`,
    );
    expect(r.stdout).not.toContain(file.key.d);

    const before = readFileSync(join(work, 'boot.json'), 'utf8');
    const again = await cli(['sandbox', 'bootstrap', 'cli-a', '--out', 'boot.json']);
    failsWith(again, 2, /^credctl: boot\.json exists: not overwritten/);
    expect(readFileSync(join(work, 'boot.json'), 'utf8')).toBe(before);
    // Refused before asking: the key in the file is still the sandbox's key.
    const status = (await (await admin('GET', '/sandboxes/cli-a')).json()) as { bootstrap_kid: string };
    expect(status.bootstrap_kid).toBe(file.key.kid);

    const asJson = await cli(['sandbox', 'bootstrap', 'cli-a', '--out', 'boot2.json', '--json']);
    expect(asJson.code).toBe(0);
    const file2 = issuedBootstrapFile(JSON.parse(readFileSync(join(work, 'boot2.json'), 'utf8')));
    expect(JSON.parse(asJson.stdout)).toEqual({ sandbox: 'cli-a', kid: file2.key.kid, file: 'boot2.json' });
    expect(file2.key.kid).not.toBe(file.key.kid);
  });

  it('sandbox bootstrap without --out prints the file to a pipe', async () => {
    const r = await cli(['sandbox', 'bootstrap', 'cli-a']);
    expect(r.code).toBe(0);
    boot = issuedBootstrapFile(JSON.parse(r.stdout));
    expect(boot).toMatchObject({ client_id: 'cli-a', issuer: worker.url, token_endpoint: `${worker.url}/oauth/token` });
    expect(typeof boot.key.d).toBe('string');
    agent = await agentToken(boot);
    expect(typeof agent.claims.cred).toBe('string');
  });

  it('sandbox bootstrap refuses to print the file on a terminal, before asking the issuer', async () => {
    // script(1) (util-linux; .ci/run installs it when missing) is required: no skip.
    expect(existsSync('/usr/bin/script') || existsSync('/bin/script'), 'script(1) from util-linux is needed for a real terminal').toBe(
      true,
    );
    // script(1) gives the CLI a real terminal as stdout.
    const command = `'${process.execPath}' '${bundle}' sandbox bootstrap cli-tty`;
    const r = await runProcess('script', ['-qec', command, '/dev/null'], {
      cwd: work,
      env: { ISSUER_URL: worker.url, ADMIN_TOKEN: TEST_ADMIN_TOKEN },
    });
    expect(r.code).toBe(2);
    expect(r.stdout.trim()).toBe(
      'credctl: the bootstrap file holds a private key and is not printed on a terminal: use --out FILE or redirect stdout (> boot.json)',
    );
    expect((await admin('GET', '/sandboxes/cli-tty')).status).toBe(404);
  });

  it('token inspect verifies a real agent token and shows neither the token, its credentials nor any key', async () => {
    const human = await cli(['token', 'inspect', agent.token]);
    expect(human.code).toBe(0);
    const header = JSON.parse(Buffer.from(agent.token.split('.')[0]!, 'base64url').toString()) as { kid: string };
    const credBytes = Buffer.byteLength(agent.claims.cred as string);
    expect(human.stdout).toMatch(/^verdict {5}VALID/);
    expect(human.stdout).toContain('kind        agent token (typ at+jwt, scope agent)');
    expect(human.stdout).toContain(`kid         ${header.kid} (in the JWKS, active)`);
    expect(human.stdout).toContain('subject     cli-a');
    expect(human.stdout).toContain('audience    gateway:cli-a');
    expect(human.stdout).toContain(`cred        [encrypted credentials, ${credBytes} bytes, not shown] (JWE ECDH-ES+A256KW / A256GCM)`);
    expect(human.stdout).toMatch(/^expires {5}\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(in \d+m\)$/m);
    expect(agent.claims.cred_egress).toEqual(['PROVIDER_API_KEY']);
    expect(human.stdout).toContain(
      'cred_egress egress-delivered: PROVIDER_API_KEY (cred holds sentinels for these, not values; the outbound handler adds the values)\n',
    );

    const asJson = await cli(['token', 'inspect', '-', '--json'], { input: `${agent.token}\n` });
    expect(asJson.code).toBe(0);
    const r = JSON.parse(asJson.stdout) as Record<string, unknown>;
    expect(r).toMatchObject({
      valid: true,
      kind: 'agent_token',
      kid_in_jwks: true,
      kid_state: 'active',
      header: { alg: 'EdDSA', typ: 'at+jwt', kid: header.kid },
    });
    expect(r.reason).toBeUndefined();
    expect(r.claims).toMatchObject({
      iss: worker.url,
      sub: 'cli-a',
      client_id: 'cli-a',
      scope: 'agent',
      cred: `[encrypted credentials, ${credBytes} bytes, not shown]`,
      cred_ver: agent.claims.cred_ver,
      cred_egress: ['PROVIDER_API_KEY'],
    });

    // From stdin, without admin credentials: still verified, no key state.
    const plain = await cli(['token', 'inspect', '-'], { input: agent.token, admin: false });
    expect(plain.code).toBe(0);
    expect(plain.stdout).toContain(`kid         ${header.kid} (in the JWKS)`);

    for (const out of [human.stdout, asJson.stdout, plain.stdout]) {
      expect(out).not.toContain(agent.claims.cred as string);
      expect(out).not.toContain(agent.token.split('.')[2]!); // the signature, so never the token
      expect(out).not.toContain(boot.key.d);
    }
  });

  it('token inspect: a tampered token, an unknown kid and another issuer do not verify (exit 5)', async () => {
    const [h, p, s] = agent.token.split('.') as [string, string, string];
    const header = JSON.parse(Buffer.from(h, 'base64url').toString()) as Record<string, unknown>;
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;

    const tampered = await cli(['token', 'inspect', `${h}.${b64({ ...claims, sub: 'someone-else' })}.${s}`]);
    expect(tampered.code).toBe(5);
    expect(tampered.stdout).toMatch(/^verdict {5}INVALID: bad_signature/);
    expect(tampered.stderr).toBe(
      'credctl: the token does not verify (bad_signature: the signature does not verify under the published key)\n',
    );

    const unknownKid = await cli(['token', 'inspect', `${b64({ ...header, kid: 'A'.repeat(43) })}.${p}.${s}`, '--json']);
    expect(unknownKid.code).toBe(5);
    expect(JSON.parse(unknownKid.stdout)).toMatchObject({ valid: false, reason: 'unknown_kid', kid_in_jwks: false });

    // The same Worker under another name: its JWKS verifies the signature, but iss is not this issuer.
    const other = await cli(['token', 'inspect', agent.token, '--json', '--issuer', worker.url.replace('127.0.0.1', 'localhost')]);
    expect(other.code).toBe(5);
    expect(JSON.parse(other.stdout)).toMatchObject({ valid: false, reason: 'bad_issuer', kid_in_jwks: true });
  });

  it('status shows keys, their timeline and sandboxes; --json has the API bodies', async () => {
    const human = await cli(['status']);
    expect(human.code).toBe(0);
    const lines = human.stdout.split('\n');
    expect(lines[0]).toBe(`issuer     ${worker.url}`);
    expect(lines[1]).toMatch(/^rotation {3}every 1d; next \S+Z \(in 23h \d+m\); /);
    expect(lines[2]).toBe('credentials  GATEWAY_TOKEN derived, PROVIDER_API_KEY egress -> localhost (authorization)');
    expect(human.stdout).toMatch(
      /^ {2}active +\S{12} +\d+[sm] +signing since (now|\d+[sm] ago); retires at the next rotation \(in 23h \d+m\)$/m,
    );
    expect(human.stdout).toMatch(/^ {2}next +\S{12} +\d+[sm] +published, not signing; signs from the next rotation/m);
    expect(human.stdout).toMatch(/^ {12}now +rotation in 23h \d+m$/m);
    expect(human.stdout).toMatch(/^ {2}active {4}=+\|-+$/m);
    expect(human.stdout).toMatch(/^ {2}next {6}-+\|=+$/m);
    expect(human.stdout).toMatch(
      new RegExp(`^  cli-a +active +(now|\\d+s ago) +in \\d+m +${agent.claims.cred_ver} +yes +${boot.key.kid.slice(0, 12)}$`, 'm'),
    );

    const asJson = await cli(['status', '--json']);
    expect(asJson.code).toBe(0);
    const s = JSON.parse(asJson.stdout) as {
      issuer: string;
      keys: { keys: { state: string }[]; schedule: Record<string, unknown> };
      sandboxes: Record<string, unknown>[];
    };
    expect(s.issuer).toBe(worker.url);
    expect(s.keys.keys.map((k) => k.state).sort()).toEqual(['active', 'next']);
    expect(s.keys.schedule).toMatchObject({ rotation_period_seconds: 86_400 });
    expect(s.sandboxes.find((x) => x.sandbox === 'cli-a')).toMatchObject({
      exists: true,
      revoked: false,
      agent_key_registered: true,
      credentials_version: agent.claims.cred_ver,
      bootstrap_kid: boot.key.kid,
    });
    const deliveries = [
      { name: 'GATEWAY_TOKEN', delivery: 'derived' },
      { name: 'PROVIDER_API_KEY', delivery: 'egress', hosts: ['localhost'], header: 'authorization' },
    ];
    for (const x of s.sandboxes) expect(x.credentials).toEqual(deliveries);

    const one = await cli(['sandbox', 'status', 'cli-a']);
    expect(one.stdout).toMatch(/^delivery {10}GATEWAY_TOKEN derived, PROVIDER_API_KEY egress -> localhost \(authorization\)$/m);
    expect(JSON.parse((await cli(['sandbox', 'status', 'cli-a', '--json'])).stdout)).toMatchObject({ credentials: deliveries });
  });

  it('audit: a table, and the API body with --json, --sandbox and --limit', async () => {
    const human = await cli(['audit']);
    expect(human.code).toBe(0);
    expect(human.stdout.split('\n')[0]).toMatch(/^TIME +SANDBOX +EVENT +OUTCOME +CODE +KID +CREDENTIALS +ACTOR$/);
    expect(human.stdout).toMatch(/^\S+Z +cli-a +token_issued +ok +- +\S{12} +\S+ +-$/m);
    expect(human.stdout).toMatch(/^\S+Z +cli-a +bootstrap +ok +- +\S{12} +- +admin-token$/m);

    const asJson = await cli(['audit', '--json', '--sandbox', 'cli-a', '--limit', '2']);
    expect(asJson.code).toBe(0);
    const { events } = JSON.parse(asJson.stdout) as { events: { sandbox: string; event: string }[] };
    expect(events).toHaveLength(2);
    expect(events.every((e) => e.sandbox === 'cli-a')).toBe(true);
    expect(events[0]!.event).toBe('token_issued');
  });

  describe('egress delivery', () => {
    let file: IssuedBootstrapFile;
    let sentinel: string;

    it('token inspect of a sentinel: its entry, hosts, sandbox and bound key; never its signature', async () => {
      const res = await admin('POST', '/sandboxes/cli-egress/bootstrap');
      expect(res.status).toBe(200);
      file = issuedBootstrapFile(await res.json());
      const { values } = await agentToken(file);
      sentinel = values.PROVIDER_API_KEY!;
      const [h, p, signature] = sentinel.split('.') as [string, string, string];
      const header = JSON.parse(Buffer.from(h, 'base64url').toString()) as { kid: string; typ: string };
      const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as { jti: string; exp: number };
      expect(header.typ).toBe('egress+jwt');

      const human = await cli(['token', 'inspect', sentinel]);
      expect(human.code).toBe(0);
      const lines = human.stdout.split('\n');
      expect(lines.slice(0, 2)).toEqual([
        'verdict     VALID as an egress sentinel (signature, issuer, times, aud egress)',
        'kind        egress sentinel (typ egress+jwt, aud egress): not an access token; usable only through the Sandbox outbound handler',
      ]);
      for (const line of [
        `issuer      ${worker.url} (this issuer)`,
        `kid         ${header.kid} (in the JWKS, active)`,
        'entry       PROVIDER_API_KEY (the CREDENTIALS entry it stands for)',
        'hosts       localhost',
        'subject     cli-egress (the sandbox it was issued to)',
        'audience    egress',
        `cnf.jkt     ${file.key.kid} (the sandbox's current bootstrap key)`,
        `jti         ${claims.jti}`,
        'use         only in a request from sandbox cli-egress to localhost, through the Sandbox outbound handler, which puts the value of PROVIDER_API_KEY in its place; a gateway refuses it as a token',
      ]) {
        expect(lines).toContain(line);
      }
      expect(human.stdout).toMatch(/^expires {5}\S+Z \(in \d+m\)$/m);

      const asJson = await cli(['token', 'inspect', '-', '--json'], { input: sentinel });
      expect(asJson.code).toBe(0);
      expect(JSON.parse(asJson.stdout)).toMatchObject({
        valid: true,
        kind: 'egress_sentinel',
        header: { alg: 'EdDSA', typ: 'egress+jwt', kid: header.kid },
        claims: {
          iss: worker.url,
          sub: 'cli-egress',
          aud: 'egress',
          name: 'PROVIDER_API_KEY',
          hosts: ['localhost'],
          cnf: { jkt: file.key.kid },
          exp: claims.exp,
          jti: claims.jti,
        },
        kid_in_jwks: true,
        kid_state: 'active',
        sandbox_check: 'current',
      });

      // Without admin credentials: verified all the same, the bound key shown without its sandbox's word.
      const plain = await cli(['token', 'inspect', sentinel], { admin: false });
      expect(plain.code).toBe(0);
      expect(plain.stdout).toContain(`cnf.jkt     ${file.key.kid}\n`);

      // A sentinel whose hosts were changed no longer verifies.
      const widened = `${h}.${b64({ ...claims, hosts: ['evil.example'] })}.${signature}`;
      const tampered = await cli(['token', 'inspect', widened]);
      expect(tampered.code).toBe(5);
      expect(tampered.stdout).toMatch(/^verdict {5}INVALID: bad_signature/);
      expect(tampered.stdout).toContain('kind        egress sentinel');
      expect(tampered.stdout).toContain(`cnf.jkt     ${file.key.kid}\n`); // unverified claims: its sandbox is not asked about them

      for (const out of [human, asJson, plain, tampered].map((r) => r.stdout + r.stderr)) {
        expect(out).not.toContain(signature);
        expect(out).not.toContain(sentinel);
        expect(out).not.toContain(file.key.d);
      }
    });

    it('audit: the outbound handler\'s refusal of a sentinel reads "egress refused: <rule>"', async () => {
      // The loopback issuer's local egress route runs the outbound handler: the sentinel sent in
      // x-api-key, where its entry is bound to authorization, is refused as host_not_bound.
      const res = await fetch(`${worker.url}/.local/egress`, {
        headers: { 'x-egress-url': 'http://localhost/v1/models', 'x-egress-sandbox': 'cli-egress', 'x-api-key': sentinel },
      });
      expect({ status: res.status, body: await res.json() }).toEqual({
        status: 403,
        body: { error: 'egress_refused', error_description: 'host_not_bound' },
      });

      const human = await cli(['audit', '--sandbox', 'cli-egress']);
      expect(human.code).toBe(0);
      expect(human.stdout).toMatch(/^MINUTE +SANDBOX +CODE +COUNT +SIGNED$/m);
      expect(human.stdout).toMatch(/^\S+Z +cli-egress +egress refused: host_not_bound +1 +yes$/m);
      expect(human.stdout).toContain('egress refused: the outbound handler refused a sentinel');
      // Which entries are egress-delivered, from the config, next to the refusals.
      expect(human.stdout).toMatch(/^credentials {2}.*PROVIDER_API_KEY egress -> localhost \(authorization\)/m);
      expect(human.stdout).not.toContain(sentinel.split('.')[2]!);

      const asJson = JSON.parse((await cli(['audit', '--sandbox', 'cli-egress', '--json'])).stdout) as {
        refusals: Record<string, unknown>[];
      };
      expect(asJson.refusals).toEqual([
        expect.objectContaining({ sandbox: 'cli-egress', code: 'egress:host_not_bound', authenticated: true, count: 1 }),
      ]);
    });

    it('token inspect of a sentinel of an earlier bootstrap, or of a revoked sandbox: verified, and said to be refused', async () => {
      const res = await admin('POST', '/sandboxes/cli-egress/bootstrap');
      expect(res.status).toBe(200);
      const human = await cli(['token', 'inspect', sentinel]);
      expect(human.code).toBe(0);
      expect(human.stdout).toContain(
        `cnf.jkt     ${file.key.kid} (not the sandbox's current bootstrap key: the outbound handler refuses it (stale_bootstrap))\n`,
      );
      expect(JSON.parse((await cli(['token', 'inspect', sentinel, '--json'])).stdout)).toMatchObject({
        valid: true,
        kind: 'egress_sentinel',
        sandbox_check: 'stale_bootstrap',
      });

      const current = (await agentToken(issuedBootstrapFile(await res.json()))).values.PROVIDER_API_KEY!;
      expect((await admin('DELETE', '/sandboxes/cli-egress')).status).toBe(200);
      const revoked = await cli(['token', 'inspect', current]);
      expect(revoked.code).toBe(0);
      expect(revoked.stdout).toMatch(/^cnf\.jkt {5}\S{43} \(the sandbox is revoked: the outbound handler refuses it \(revoked\)\)$/m);
    });
  });

  it('keys list, rotate (too soon, then forced) and revoke', async () => {
    const list = await cli(['keys', 'list', '--json']);
    expect(list.code).toBe(0);
    const before = JSON.parse(list.stdout) as { keys: { kid: string; state: string }[] };
    const next = before.keys.find((k) => k.state === 'next')!;
    const active = before.keys.find((k) => k.state === 'active')!;
    const human = await cli(['keys', 'list']);
    expect(human.stdout).toMatch(new RegExp(`^  active +${active.kid} `, 'm'));
    expect(human.stdout).toMatch(/^rotation: every 1d; /m);

    // A kid may begin with "-" (base64url): it is still the argument, not an unknown option.
    const dashKid = `-${'A'.repeat(42)}`;
    failsWith(await cli(['keys', 'revoke', dashKid]), 1, /^credctl: the issuer answered 404 not_found: no published key has this kid$/);
    failsWith(
      await cli(['keys', 'revoke', dashKid, '--json']),
      1,
      /^credctl: the issuer answered 404 not_found: no published key has this kid$/,
    );

    const tooSoon = await cli(['keys', 'rotate']);
    failsWith(tooSoon, 1, /^credctl: the issuer answered 409 rotation_too_soon: .+ \(credctl keys rotate --force rotates anyway\)$/);

    const forced = await cli(['keys', 'rotate', '--force', '--json']);
    expect(forced.code).toBe(0);
    const after = JSON.parse(forced.stdout) as { keys: { kid: string; state: string }[] };
    expect(after.keys.find((k) => k.state === 'active')!.kid).toBe(next.kid);
    expect(after.keys.find((k) => k.kid === active.kid)!.state).toBe('retiring');
    const timeline = (await cli(['status'])).stdout;
    expect(timeline).toMatch(
      new RegExp(`^  retiring +${active.kid.slice(0, 12)} +\\d+[sm] +stopped signing (now|\\d+[sm] ago); leaves the JWKS in \\d+m$`, 'm'),
    );
    expect(timeline).toMatch(/^ {2}retiring {2}-+x$/m);

    // The agent token was signed by the key now retiring: still valid until it is revoked.
    expect((await cli(['token', 'inspect', agent.token])).code).toBe(0);
    const revoked = await cli(['keys', 'revoke', active.kid]);
    expect(revoked.code).toBe(0);
    expect(revoked.stdout.split('\n')[0]).toBe(`revoked ${active.kid.slice(0, 12)}: it has left the JWKS`);
    expect(revoked.stdout).toMatch(new RegExp(`^  removed +${active.kid} .*\\(revoked\\)$`, 'm'));
    const gone = await cli(['token', 'inspect', agent.token, '--json']);
    expect(gone.code).toBe(5);
    expect(JSON.parse(gone.stdout)).toMatchObject({ valid: false, reason: 'unknown_kid', kid_in_jwks: false, kid_state: 'removed' });

    const human2 = await cli(['keys', 'rotate', '--force']);
    expect(human2.code).toBe(0);
    expect(human2.stdout.split('\n')[0]).toMatch(/^rotated \(forced\): \S{12} is now the active key$/);

    // --json: the API's listing after the revocation.
    const asJson = await cli(['keys', 'revoke', next.kid, '--json']);
    expect(asJson.code).toBe(0);
    const listing = JSON.parse(asJson.stdout) as {
      keys: { kid: string; state: string; removed_reason?: string; removed_at?: string }[];
      schedule: Record<string, unknown>;
    };
    expect(listing.keys.find((k) => k.kid === next.kid)).toMatchObject({
      state: 'removed',
      removed_reason: 'revoked',
      removed_at: expect.any(String),
    });
    expect(listing.keys.filter((k) => k.state === 'active')).toHaveLength(1);
    expect(Object.keys(listing.schedule).sort()).toEqual(['earliest_manual_rotation_at', 'next_rotation_at', 'rotation_period_seconds']);
  });

  it('sandbox list, status, refresh and revoke; gateway restart', async () => {
    const list = await cli(['sandbox', 'list', '--json']);
    expect(list.code).toBe(0);
    expect((JSON.parse(list.stdout) as { sandboxes: { sandbox: string }[] }).sandboxes.map((s) => s.sandbox)).toContain('cli-a');

    const one = await cli(['sandbox', 'status', 'cli-a']);
    expect(one.code).toBe(0);
    expect(one.stdout).toMatch(/^state {13}active$/m);
    failsWith(await cli(['sandbox', 'status', 'never-made']), 1, /^credctl: the issuer answered 404 not_found: no such sandbox$/);

    // wrangler dev runs without containers: the Sandbox binding exists, its container never answers.
    failsWith(
      await cli(['sandbox', 'refresh', 'cli-a']),
      1,
      /^credctl: the issuer answered 502 bad_gateway: the sandbox did not answer a refresh \(is its container running\?\)$/,
    );
    failsWith(
      await cli(['gateway', 'restart']),
      1,
      /^credctl: the issuer answered 502 bad_gateway: the sandbox did not answer a restart \(is its container running\?\)$/,
    );

    const revoke = await cli(['sandbox', 'revoke', 'cli-a']);
    expect(revoke).toMatchObject({
      code: 0,
      stdout: 'sandbox cli-a revoked: its bootstrap key and every refresh are refused until a new bootstrap\n',
    });
    const after = await cli(['sandbox', 'status', 'cli-a', '--json']);
    expect(JSON.parse(after.stdout)).toMatchObject({ sandbox: 'cli-a', revoked: true });
    expect((await cli(['status'])).stdout).toMatch(/^ {2}cli-a +revoked /m);

    // --json: the sandbox's status after the revocation.
    expect((await admin('POST', '/sandboxes/cli-b/bootstrap')).status).toBe(200);
    const asJson = await cli(['sandbox', 'revoke', 'cli-b', '--json']);
    expect(asJson.code).toBe(0);
    expect(JSON.parse(asJson.stdout)).toMatchObject({
      sandbox: 'cli-b',
      exists: true,
      revoked: true,
      revoked_at: expect.any(String),
      agent_key_registered: false,
    });
  });

  it('a wrong admin token, or none: exit 3, one line, the token never shown', async () => {
    const wrong = await cli(['status', '--admin-token', 'not-the-admin-token-0123456789abcdef']);
    failsWith(
      wrong,
      3,
      /^credctl: the issuer refused the admin credentials \(401 unauthorized: the admin token is not valid\); check ADMIN_TOKEN$/,
    );
    expect(wrong.stderr).not.toContain('not-the-admin-token');

    failsWith(await cli(['keys', 'list'], { admin: false }), 3, /^credctl: no admin credentials: set ADMIN_TOKEN/);
  });

  it('reads ADMIN_TOKEN from ./.dev.vars for a loopback issuer when none is set', async () => {
    const devDir = join(dir, 'with-dev-vars');
    mkdirSync(devDir);
    writeFileSync(join(devDir, '.dev.vars'), `ISSUER=http://127.0.0.1:8787\nADMIN_TOKEN="${TEST_ADMIN_TOKEN}"\nSIGNING_KEY_KEK=x\n`);
    const r = await cli(['keys', 'list', '--json'], { admin: false, cwd: devDir });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toHaveProperty('schedule');
  });

  it('refuses to send admin credentials over plain http to another machine (exit 2)', async () => {
    failsWith(
      await cli(['status', '--issuer', 'http://192.0.2.1:8787']),
      2,
      /^credctl: refusing to send admin credentials over plain http to 192\.0\.2\.1:8787; use an https issuer URL$/,
    );
  });
});

describe('the network edge', () => {
  let server: Server;
  let base: string;
  const seen: IncomingHttpHeaders[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      seen.push(req.headers);
      if (req.url === '/api/admin/keys') {
        if (req.headers['cf-access-client-secret'] !== ACCESS_SECRET) {
          res.writeHead(403, { 'Content-Type': 'text/html' }).end('<html>Forbidden</html>');
          return;
        }
        const listing = {
          keys: [],
          schedule: {
            rotation_period_seconds: 60,
            next_rotation_at: new Date(Date.now() + 60_000).toISOString(),
            earliest_manual_rotation_at: new Date().toISOString(),
          },
        };
        res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(listing));
      } else if (req.url === '/api/admin/sandboxes') {
        res.writeHead(200, { 'Content-Type': 'text/html' }).end('<html>a login page</html>');
      } else if (req.method === 'POST' && req.url === '/api/admin/sandboxes/sb-1/refresh') {
        // The successful answers that need a running container, which the local Worker never has.
        res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ sandbox: 'sb-1', refresh: 'requested' }));
      } else if (req.method === 'POST' && req.url === '/api/admin/gateway/restart') {
        res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ sandbox: 'main', started: true }));
      } else if (req.method === 'POST' && req.url === '/api/admin/sandboxes/sb-1/bootstrap') {
        // JSON, but no bootstrap file: its key is a public key only.
        const key = { kty: 'OKP', crv: 'Ed25519', x: 'AAAA', kid: 'k' };
        res
          .writeHead(200, { 'Content-Type': 'application/json' })
          .end(JSON.stringify({ client_id: 'sb-1', issuer: base, token_endpoint: `${base}/oauth/token`, key }));
      }
      // Anything else is never answered: a hung issuer.
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const addr = server.address();
    base = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it('sends a Cloudflare Access service token as CF-Access-Client-Id/-Secret headers, from flags or the environment', async () => {
    seen.length = 0;
    const fromEnv = await cli(['keys', 'list', '--json', '--issuer', base], {
      admin: false,
      env: { CF_ACCESS_CLIENT_ID: 'svc.access', CF_ACCESS_CLIENT_SECRET: ACCESS_SECRET },
    });
    expect(fromEnv.code).toBe(0);
    expect(seen[0]).toMatchObject({ 'cf-access-client-id': 'svc.access', 'cf-access-client-secret': ACCESS_SECRET });
    expect(seen[0]!.authorization).toBeUndefined();

    const fromFlags = await cli(
      ['keys', 'list', '--issuer', base, '--access-client-id', 'svc.flag', '--access-client-secret', ACCESS_SECRET],
      { admin: false },
    );
    expect(fromFlags.code).toBe(0);
    expect(seen[1]).toMatchObject({ 'cf-access-client-id': 'svc.flag', 'cf-access-client-secret': ACCESS_SECRET });

    const refused = await cli(['keys', 'list', '--issuer', base], {
      admin: false,
      env: { CF_ACCESS_CLIENT_ID: 'svc.access', CF_ACCESS_CLIENT_SECRET: 'a-wrong-secret-value' },
    });
    failsWith(
      refused,
      3,
      /^credctl: the issuer refused the admin credentials \(403, not the issuer's answer: Cloudflare Access\?\); check CF_ACCESS_CLIENT_ID and CF_ACCESS_CLIENT_SECRET$/,
    );
    expect(refused.stderr).not.toContain('a-wrong-secret-value');
  });

  it('sandbox refresh and gateway restart, answered by a container (stand-in issuer): human and --json', async () => {
    const opts = { admin: false, env: { ADMIN_TOKEN: TEST_ADMIN_TOKEN } };
    expect(await cli(['sandbox', 'refresh', 'sb-1', '--issuer', base], opts)).toMatchObject({
      code: 0,
      stdout: 'sandbox sb-1: refresh requested\n',
    });
    const refresh = await cli(['sandbox', 'refresh', 'sb-1', '--issuer', base, '--json'], opts);
    expect(refresh.code).toBe(0);
    expect(JSON.parse(refresh.stdout)).toEqual({ sandbox: 'sb-1', refresh: 'requested' });
    expect(await cli(['gateway', 'restart', '--issuer', base], opts)).toMatchObject({
      code: 0,
      stdout: 'sandbox main: gateway restarted with a new bootstrap key (the previous key is refused from now on)\n',
    });
    const restart = await cli(['gateway', 'restart', '--issuer', base, '--json'], opts);
    expect(restart.code).toBe(0);
    expect(JSON.parse(restart.stdout)).toEqual({ sandbox: 'main', started: true });
  });

  it('an answer that is not the API (or not a bootstrap file), a hung issuer and a closed port are "unreachable" (exit 4)', async () => {
    failsWith(
      await cli(['sandbox', 'list', '--issuer', base]),
      4,
      new RegExp(
        `^credctl: the answer from ${base}/api/admin/sandboxes is not the issuer's API \\(HTTP 200, text/html\\); check --issuer$`,
      ),
    );
    failsWith(
      await cli(['audit', '--issuer', base, '--timeout', '0.5']),
      4,
      new RegExp(`^credctl: cannot reach the issuer at ${base} \\(no answer within 0.5 s\\); is it running\\? set --issuer or ISSUER_URL$`),
    );
    // A bootstrap answer the agent would refuse is not written (checkBootstrapFile names the field).
    const out = join(work, 'not-a-bootstrap.json');
    failsWith(
      await cli(['sandbox', 'bootstrap', 'sb-1', '--out', out, '--issuer', base]),
      4,
      /^credctl: the issuer's answer is not a bootstrap file \(key is not a private Ed25519 JWK\); nothing was written; check --issuer$/,
    );
    expect(existsSync(out)).toBe(false);
    const closed = `http://127.0.0.1:${await freePort()}`;
    failsWith(
      await cli(['status', '--issuer', closed]),
      4,
      new RegExp(`^credctl: cannot reach the issuer at ${closed} \\(connection refused\\); is it running\\? set --issuer or ISSUER_URL$`),
    );
  });
});
