/**
 * The environment start.sh gets holds no secret: checked against every secret of a .dev.vars made
 * the way `npm run dev` makes it (keys.example with fresh random values), and every value the
 * Worker derives from them.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { dotenvEntry } from '../../src/admin-api.js';
import { ROOT } from './worker-process.js';

// Imported by path: these Worker modules are typed against the Workers types, which this (Node)
// project's type check does not load; at run time they need only WebCrypto and zod.
type Mod = Record<string, (...a: unknown[]) => unknown>;
const load = (p: string) => import(/* @vite-ignore */ `${ROOT}${p}`) as Promise<Mod>;

it('no value of .dev.vars that is a secret, nor any delivered credential, is in the gateway process env', async () => {
  const vars: Record<string, string> = {};
  const secrets: string[] = [];
  for (const line of readFileSync(`${ROOT}keys.example`, 'utf8').split('\n')) {
    const e = dotenvEntry(line);
    if (!e) continue;
    let value = e.value;
    if (value.startsWith('replace-me')) {
      value = randomBytes(32).toString('base64url');
      secrets.push(value);
    }
    vars[e.name] = value;
  }
  expect(secrets.length).toBeGreaterThanOrEqual(3);
  const [{ parseConfig }, { fixedValuesFor }, { gatewayProcessEnv }] = await Promise.all([
    load('src/config.ts'),
    load('src/issuer/credentials.ts'),
    load('src/sandbox/gateway.ts'),
  ]);
  const config = parseConfig!(vars) as { credentials: unknown; gateway: { sandboxId: string } };
  const delivered = { values: (await fixedValuesFor!(config.credentials, config.gateway.sandboxId)) as Record<string, string> };
  const envText = JSON.stringify(gatewayProcessEnv!(config));
  for (const s of [...secrets, ...Object.values(delivered.values)]) expect(envText).not.toContain(s);
});
