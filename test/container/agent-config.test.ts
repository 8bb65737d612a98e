import { describe, expect, it } from 'vitest';
import { parseAgentConfig, UsageError } from '../../container/agent/config.js';

const base = ['--bootstrap-key', '/b.json', '--dir', '/out'];

function usage(argv: string[], env: NodeJS.ProcessEnv = {}): string {
  try {
    parseAgentConfig(argv, env);
  } catch (e) {
    if (e instanceof UsageError) return e.message;
    throw e;
  }
  throw new Error('expected a UsageError');
}

describe('agent flags', () => {
  it('has the documented defaults', () => {
    expect(parseAgentConfig(base, {})).toEqual({
      bootstrapKeyFile: '/b.json',
      dir: '/out',
      issuerOverride: undefined,
      onChange: undefined,
      host: '127.0.0.1',
      port: 8788,
      once: false,
      hookTimeoutMs: 30_000,
      maxBackoffMs: 300_000,
    });
  });

  it('reads every environment twin, and a flag wins over its twin', () => {
    const env = {
      BOOTSTRAP_KEY_FILE: '/e.json',
      CREDENTIALS_DIR: '/e',
      ISSUER_URL: 'http://issuer.internal',
      ON_CHANGE: 'true',
      AGENT_PORT: '9000',
      AGENT_HOST: '0.0.0.0',
      HOOK_TIMEOUT: '5s',
      MAX_BACKOFF: '2m',
      ONCE: '1',
    };
    expect(parseAgentConfig([], env)).toMatchObject({
      bootstrapKeyFile: '/e.json',
      dir: '/e',
      issuerOverride: 'http://issuer.internal',
      onChange: 'true',
      port: 9000,
      host: '0.0.0.0',
      hookTimeoutMs: 5000,
      maxBackoffMs: 120_000,
      once: true,
    });
    expect(parseAgentConfig(['--port', '9100', '--dir', '/f'], env)).toMatchObject({ port: 9100, dir: '/f' });
  });

  it('names the flag of every bad or missing value in one line', () => {
    expect(usage(['--dir', '/out'])).toBe('--bootstrap-key (or BOOTSTRAP_KEY_FILE) is required');
    expect(usage(['--bootstrap-key', '/b'])).toBe('--dir (or CREDENTIALS_DIR) is required');
    expect(usage([...base, '--port', '70000'])).toMatch(/^--port: /);
    expect(usage([...base, '--port', 'abc'])).toMatch(/^--port: /);
    expect(usage([...base, '--issuer', 'issuer.internal'])).toMatch(/^--issuer: /);
    expect(usage([...base, '--max-backoff', '5 minutes'])).toMatch(/^--max-backoff: /);
    expect(usage([...base, '--hook-timeout', '0s'])).toMatch(/^--hook-timeout: /);
    expect(usage([...base, '--nope'])).toMatch(/nope/);
    for (const m of [usage(['--dir', '/out']), usage([...base, '--port', 'x'])]) expect(m).not.toContain('\n');
  });
});
