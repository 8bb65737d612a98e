/**
 * What the local stack prints once it is up: what runs where, one `curl` through the whole chain,
 * and the operator CLI commands to try next. The curl line is the one line that starts with
 * "  curl " (the end-to-end test runs it as printed).
 */
import type { StackPorts } from './ports.js';

export interface StatusInput {
  ports: StackPorts;
  sandbox: string;
  stateDir: string;
  host: string;
  defaultBase: number;
  /** The shell's ISSUER_URL, which credctl would otherwise follow. */
  issuerUrlEnv?: string;
}

export function statusText(s: StatusInput): string {
  const url = (port: number) => `http://${s.host}:${port}`;
  const issuer = url(s.ports.issuer);
  // credctl defaults to the default local issuer, unless the shell's ISSUER_URL points elsewhere.
  const defaultTarget = s.ports.issuer === s.defaultBase && (s.issuerUrlEnv === undefined || s.issuerUrlEnv.replace(/\/+$/, '') === issuer);
  const cli = defaultTarget ? 'npx credctl' : `npx credctl --issuer ${issuer}`;
  return `
Local stack is up (Ctrl-C stops everything):

  issuer   ${issuer}   the Worker in workerd (wrangler dev); keys kept in .wrangler/state
  agent    ${url(s.ports.agent)}   sandbox "${s.sandbox}": token and credentials in ${s.stateDir}/agent/
  proxy    ${url(s.ports.proxy)}   verifying proxy: checks the access token, presents GATEWAY_TOKEN
  gateway  ${url(s.ports.gateway)}   stand-in gateway: accepts only the agent's current GATEWAY_TOKEN
  logs     ${s.stateDir}/logs/

Through the whole chain (Worker mints an access token for DEV_USER -> proxy verifies it -> gateway):
  curl -s ${issuer}/hello

Then the operator CLI (for a local issuer it reads ADMIN_TOKEN from .dev.vars):
  ${cli} status                            keys, sandboxes, token expiry
  ${cli} keys rotate --force               rotate the signing key; the chain keeps working
  ${cli} audit --limit 10                  who got which token
  ${cli} token inspect - < ${s.stateDir}/agent/token   decode and verify the agent's token
  curl -s -X POST ${url(s.ports.agent)}/refresh   make the agent refresh now
`;
}
