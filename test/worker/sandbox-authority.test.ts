import { env, runInDurableObject } from 'cloudflare:test';
import { beforeEach, describe, expect, it } from 'vitest';
import { appendAudit, AUDIT_MAX_EVENTS, readAudit } from '../../src/issuer/audit.js';
import type { SandboxAuthority } from '../../src/issuer/sandbox-authority.js';
import { freshStorage } from './helpers.js';
import { assertion, bootstrap, requestToken } from './token-helpers.js';

beforeEach(freshStorage);

function authority(id: string): DurableObjectStub<SandboxAuthority> {
  return env.SANDBOX_AUTHORITY.get(env.SANDBOX_AUTHORITY.idFromName(id)) as DurableObjectStub<SandboxAuthority>;
}

describe('SandboxAuthority storage', () => {
  it('keeps only the public half of the bootstrap key', async () => {
    const b = await bootstrap('sb-store');
    const dump = await runInDurableObject(authority('sb-store'), (_i, s) => JSON.stringify(s.storage.sql.exec('SELECT * FROM meta').toArray()));
    expect(dump).toContain(b.key.x!);
    expect(dump).not.toContain(b.key.d!);
  });

  it('remembers a jti until exp + skew, then sweeps it', async () => {
    const b = await bootstrap('sb-jti');
    const jwt = await assertion(b);
    expect((await requestToken(jwt)).status).toBe(200);
    const exp = JSON.parse(atob(jwt.split('.')[1]!.replace(/-/g, '+').replace(/_/g, '/'))).exp as number;
    const rows = await runInDurableObject(authority('sb-jti'), (_i, s) => s.storage.sql.exec<{ jti: string; expires_at: number }>('SELECT * FROM jti').toArray());
    expect(rows).toHaveLength(1);
    expect(rows[0]!.expires_at).toBe((exp + 30) * 1000);
    const alarm = await runInDurableObject(authority('sb-jti'), (_i, s) => s.storage.getAlarm());
    expect(alarm).not.toBeNull();

    // An expired entry is swept by the alarm; a live one stays.
    const left = await runInDurableObject(authority('sb-jti'), async (i: SandboxAuthority, s) => {
      s.storage.sql.exec('INSERT INTO jti (jti, expires_at) VALUES (?, ?)', 'old', Date.now() - 1);
      await i.alarm();
      return s.storage.sql.exec<{ jti: string }>('SELECT jti FROM jti').toArray().map((r) => r.jti);
    });
    expect(left).toEqual([rows[0]!.jti]);
  });

  it('the audit log is bounded: oldest events go past the limit', async () => {
    const events = await runInDurableObject(authority('sb-bound'), (_i, s) => {
      for (let n = 0; n < AUDIT_MAX_EVENTS + 120; n++) appendAudit(s.storage.sql, n, { sandbox: 'sb-bound', event: 'token_issued', outcome: 'ok', jti: `j${n}` });
      return { count: s.storage.sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM audit').one().n, newest: readAudit(s.storage.sql, 3) };
    });
    expect(events.count).toBeLessThanOrEqual(AUDIT_MAX_EVENTS + 50);
    expect(events.count).toBeGreaterThanOrEqual(AUDIT_MAX_EVENTS);
    expect(events.newest.map((e) => e.jti)).toEqual([`j${AUDIT_MAX_EVENTS + 119}`, `j${AUDIT_MAX_EVENTS + 118}`, `j${AUDIT_MAX_EVENTS + 117}`]);
  });

  it('an unknown sandbox leaves no storage behind', async () => {
    const b = await bootstrap('sb-known');
    await requestToken(await assertion({ ...b, client_id: 'sb-ghost' }));
    const n = await runInDurableObject(authority('sb-ghost'), (_i, s) => s.storage.sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM meta').one().n + s.storage.sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM audit').one().n);
    expect(n).toBe(0);
  });
});
