/**
 * container/start.sh: shellcheck-clean, and its order run for real with stand-ins for node's
 * programs: the agent's --once is retried until it succeeds, then agent, proxy and gateway run
 * together, and the script exits (with that status) as soon as one of them exits.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { ROOT } from './worker-process.js';

const dir = mkdtempSync(join(tmpdir(), 'start-sh-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('passes shellcheck', () => {
  const r = spawnSync('shellcheck', [`${ROOT}container/start.sh`], { encoding: 'utf8' });
  expect(r.error, 'shellcheck must be installed (.ci/run installs it)').toBeUndefined();
  expect(r.stdout + r.stderr).toBe('');
  expect(r.status).toBe(0);
});

it('retries --once until the first credential, then runs all three and exits when one exits', async () => {
  const log = join(dir, 'calls.log');
  // The stand-ins' sleep is this odd length so that counting them (below) never counts another
  // test's `sleep 30`: test files run side by side.
  const STANDIN_SLEEP_S = '30.417';
  // Stand-in `node`: logs its arguments; --once fails twice, then succeeds; the long-running
  // agent and proxy sleep; the gateway exits with status 7 after a moment.
  const fakeNode = join(dir, 'node');
  writeFileSync(
    fakeNode,
    `#!/usr/bin/env bash
echo "$*" >> ${log}
case "$*" in
  *--once*) n=$(grep -c -- --once ${log}); [ "$n" -ge 3 ] && exit 0 || exit 1 ;;
  *) exec sleep ${STANDIN_SLEEP_S} ;;
esac
`,
  );
  chmodSync(fakeNode, 0o755);
  const env = {
    PATH: `${dir}:${process.env.PATH}`,
    CREDENTIAL_AGENT_LIB: '/lib-under-test',
    BOOTSTRAP_KEY_FILE: '/b.json',
    CREDENTIALS_DIR: '/out',
    CREDENTIALS_FILE: '/out/credentials.json',
    ISSUER_URL: 'http://issuer.internal',
    JWKS_URL: 'https://issuer.example/.well-known/jwks.json',
    EXPECTED_ISSUER: 'https://issuer.example',
    EXPECTED_AUDIENCE: 'gateway:main',
    UPSTREAM_URL: 'http://127.0.0.1:18789',
    ON_CHANGE: 'true',
    GATEWAY_COMMAND: join(dir, 'gateway'),
    // The platform's CA for HTTPS interception of egress hosts: the gateway must be told to trust it.
    PLATFORM_CA: join(dir, 'platform-ca.crt'),
  };
  writeFileSync(env.PLATFORM_CA, 'not a real certificate\n');
  // The stand-in gateway exits (7) once the backgrounded agent and proxy have started, i.e. both
  // logged a line with --port (at most 10 s), so the order is certain even under load.
  // /bin/sleep: the PATH stub below returns at once.
  writeFileSync(
    join(dir, 'gateway'),
    `#!/usr/bin/env bash
echo gateway >> ${log}
echo "gateway ca=$NODE_EXTRA_CA_CERTS" >> ${log}
for _ in $(seq 200); do [ "$(grep -c -- --port ${log})" -ge 2 ] && break; /bin/sleep 0.05; done
exit 7
`,
  );
  chmodSync(join(dir, 'gateway'), 0o755);
  // sleep 2 between --once tries is the script's own; stub it out through PATH for speed.
  writeFileSync(join(dir, 'sleep'), `#!/usr/bin/env bash\n[ "$1" = ${STANDIN_SLEEP_S} ] && exec /bin/sleep ${STANDIN_SLEEP_S}; exit 0\n`);
  chmodSync(join(dir, 'sleep'), 0o755);
  const r = spawnSync('bash', [`${ROOT}container/start.sh`], { env, encoding: 'utf8', timeout: 20_000 });
  expect(r.status, r.stderr).toBe(7);
  const calls = readFileSync(log, 'utf8').trim().split('\n');
  expect(calls.filter((c) => c.includes('--once'))).toHaveLength(3);
  expect(calls.slice(0, 3).every((c) => c.includes('--once') && c.includes('--on-change true'))).toBe(true);
  const rest = calls.slice(3);
  expect(rest.some((c) => c.startsWith('/lib-under-test/refresh.mjs') && c.includes('--port 8788'))).toBe(true);
  expect(rest.some((c) => c.startsWith('/lib-under-test/gateway-proxy.mjs') && c.includes('--audience gateway:main'))).toBe(true);
  expect(rest).toContain('gateway');
  expect(rest).toContain(`gateway ca=${env.PLATFORM_CA}`);
  // The stand-in agent and proxy were stopped when the gateway exited: start.sh signals them as
  // it exits, so they may take a moment under load (they would otherwise sleep 30 s).
  const running = () =>
    execFileSync('bash', ['-c', `pgrep -f "[s]leep ${STANDIN_SLEEP_S}$" | wc -l`])
      .toString()
      .trim();
  for (let i = 0; i < 30 && running() !== '0'; i++) await new Promise((r) => setTimeout(r, 100));
  expect(running()).toBe('0');
});
