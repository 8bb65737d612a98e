import { SELF } from 'cloudflare:test';
import { expect, it } from 'vitest';
it('serves a jwks', async () => {
  const r = await SELF.fetch('http://x/.well-known/jwks.json');
  const body = await r.json() as any;
  expect(r.status).toBe(200);
  expect(body.keys).toHaveLength(2);
});
