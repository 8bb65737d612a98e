/**
 * Operations on a sandbox that routes share: a new bootstrap file, and the sandbox itself (or a
 * clear refusal where the Worker has no Sandbox binding).
 */

import { type BootstrapFile, TOKEN_PATH } from '../admin-api.js';
import type { Services } from '../app-env.js';
import { IssuerError } from '../issuer/errors.js';
import { unwrap } from '../issuer/result.js';
import { log } from '../log.js';
import type { SandboxApi } from '../sandbox/gateway.js';

/** A new bootstrap key for the sandbox (docs/architecture.md, "Bootstrap file"): the previous one stops working at once. */
export async function issueBootstrapFile(s: Services, id: string, actor: string): Promise<BootstrapFile> {
  await s.keyAuthority().registerSandbox(id);
  s.registry.remember(id);
  const { privateJwk, kid } = await unwrap(s.sandboxAuthority(id).bootstrap(id, actor));
  log('info', 'sandbox_bootstrap', { by: actor, sandbox: id, kid });
  return {
    client_id: id,
    issuer: s.config.issuer,
    token_endpoint: `${s.config.issuer}${TOKEN_PATH}`,
    key: privateJwk as Record<string, unknown>,
  };
}

/** The sandbox, where this Worker reaches one (services.ts decides: a Sandbox binding and no GATEWAY_UPSTREAM). */
export function sandboxOrRefuse(s: Services, id: string): SandboxApi {
  const sb = s.sandboxApi?.(id);
  if (!sb)
    throw new IssuerError(
      'gateway_unavailable',
      'no sandbox to reach: this Worker has no Sandbox binding, or GATEWAY_UPSTREAM sends its gateway traffic elsewhere',
    );
  return sb;
}
