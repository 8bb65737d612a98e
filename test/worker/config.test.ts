import { describe, expect, it } from 'vitest';
import { OPTIONS, parseConfig } from '../../src/config.js';
import { ConfigError } from '../../src/issuer/errors.js';
import { call, captureLogs } from './helpers.js';

const base = { ISSUER: 'https://issuer.example.com' };

function configError(env: Record<string, unknown>): ConfigError {
  try {
    parseConfig(env);
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('expected a ConfigError');
}

describe('parseConfig', () => {
  it('applies the documented defaults', () => {
    const c = parseConfig(base);
    expect(c.timing).toEqual({ accessTokenTtl: 300, agentTokenTtl: 600, jwksMaxAge: 300, clockSkew: 30, rotationPeriod: 86400 });
    expect(c.issuer).toBe('https://issuer.example.com');
    expect(c.admin).toEqual({ access: undefined, token: undefined });
  });

  it('reads durations in s, m, h, d and plain seconds', () => {
    const c = parseConfig({
      ...base,
      ACCESS_TOKEN_TTL: '2m',
      AGENT_TOKEN_TTL: '900',
      JWKS_MAX_AGE: '1m',
      ROTATION_PERIOD: '2d',
      CLOCK_SKEW: '5s',
    });
    expect(c.timing).toEqual({ accessTokenTtl: 120, agentTokenTtl: 900, jwksMaxAge: 60, clockSkew: 5, rotationPeriod: 172800 });
  });

  it('names the option of an unknown duration format', () => {
    for (const bad of ['5 minutes', '1.5h', '-3s', '10w', 'soon']) {
      const e = configError({ ...base, JWKS_MAX_AGE: bad });
      expect(e.option).toBe('JWKS_MAX_AGE');
      expect(e.rule).toMatch(/duration/);
    }
  });

  it('requires ISSUER as an absolute URL', () => {
    expect(configError({}).option).toBe('ISSUER');
    expect(configError({ ISSUER: 'issuer.example.com' }).option).toBe('ISSUER');
    expect(configError({ ISSUER: 'https://x.example/?a=1' }).rule).toMatch(/URL/);
  });

  it('a token TTL longer than a quarter of the rotation period names the TTL option', () => {
    const e = configError({ ...base, AGENT_TOKEN_TTL: '7h' });
    expect(e.option).toBe('AGENT_TOKEN_TTL');
    expect(e.rule).toMatch(/quarter of ROTATION_PERIOD/);
    expect(configError({ ...base, ACCESS_TOKEN_TTL: '2h', AGENT_TOKEN_TTL: '10m', ROTATION_PERIOD: '6h' }).option).toBe('ACCESS_TOKEN_TTL');
  });

  it('checks that a next key is published JWKS_MAX_AGE + CLOCK_SKEW before it signs', () => {
    const e = configError({ ...base, ACCESS_TOKEN_TTL: '10s', AGENT_TOKEN_TTL: '10s', JWKS_MAX_AGE: '1h', ROTATION_PERIOD: '1h' });
    expect(e.option).toBe('ROTATION_PERIOD');
    expect(e.rule).toMatch(/next key must be published/);
  });

  it('checks that a retiring key outlives its tokens and every cached JWKS', () => {
    // quarter rule holds (600*4 <= 2400), the next-key lead holds (1800 + 30 <= 2400), but 60 + 600 + 1800 + 30 > 2400
    const e = configError({ ...base, AGENT_TOKEN_TTL: '600s', JWKS_MAX_AGE: '30m', ROTATION_PERIOD: '40m' });
    expect(e.option).toBe('ROTATION_PERIOD');
    expect(e.rule).toMatch(/retiring key must stay published/);
  });

  it('refuses half a Cloudflare Access configuration and weak secrets', () => {
    expect(configError({ ...base, CF_ACCESS_TEAM_DOMAIN: 'team.cloudflareaccess.com' }).option).toBe('CF_ACCESS_AUD');
    expect(configError({ ...base, CF_ACCESS_AUD: 'abc' }).option).toBe('CF_ACCESS_TEAM_DOMAIN');
    expect(configError({ ...base, ADMIN_TOKEN: 'short' }).option).toBe('ADMIN_TOKEN');
    expect(configError({ ...base, SIGNING_KEY_KEK: 'short' }).option).toBe('SIGNING_KEY_KEK');
  });

  it('never puts a secret value in the error', () => {
    const e = configError({ ...base, ADMIN_TOKEN: 'tiny-secret-value' });
    expect(e.message).not.toContain('tiny-secret-value');
  });

  it('knows exactly the documented options', () => {
    expect([...OPTIONS].sort()).toEqual(
      [
        'ACCESS_TOKEN_TTL',
        'ADMIN_ACCESS_AUD',
        'ADMIN_TOKEN',
        'ADMIN_USERS',
        'AGENT_TOKEN_TTL',
        'CF_ACCESS_AUD',
        'CF_ACCESS_TEAM_DOMAIN',
        'CLOCK_SKEW',
        'CREDENTIALS',
        'DEV_USER',
        'GATEWAY_UPSTREAM',
        'ISSUER',
        'JWKS_MAX_AGE',
        'ROTATION_PERIOD',
        'SANDBOX_ID',
        'SIGNING_KEY_KEK',
      ].sort(),
    );
  });
});

describe('a broken config at the first request', () => {
  it('answers 500 "configuration error" and logs the option and rule', async () => {
    const { result: res, lines } = await captureLogs(() => call('/.well-known/jwks.json', {}, { AGENT_TOKEN_TTL: '7h' }));
    expect(res.status).toBe(500);
    expect(await res.json()).toEqual({ error: 'configuration_error', error_description: 'configuration error' });
    const line = lines.map((l) => JSON.parse(l)).find((l) => l.event === 'configuration_error');
    expect(line).toMatchObject({ level: 'error', option: 'AGENT_TOKEN_TTL' });
    expect(line.rule).toMatch(/quarter/);
  });

  it('does the same on admin routes, before authentication', async () => {
    const res = await call('/api/admin/keys', {}, { ROTATION_PERIOD: 'daily' });
    expect(res.status).toBe(500);
    expect(((await res.json()) as { error_description: string }).error_description).toBe('configuration error');
  });
});
