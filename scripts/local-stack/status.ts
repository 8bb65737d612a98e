/**
 * What the local stack prints once it is up: what runs where, how to go through the whole chain,
 * and the operator CLI commands to try next. With the stand-in gateway that is one `curl`, the one
 * line that starts with "  curl -s http" (the end-to-end test runs it as printed). With the real
 * gateway it is the Control UI URL (no token in it: the Worker adds the user's access token) and
 * the real OpenClaw CLI command, each on a line of its own (its test runs them as printed). With
 * either, then a chat completion that reaches the stand-in model provider through the local egress
 * hop and the Worker's egress handler (the line that starts with "  curl -s -X POST").
 */

import { DEV_VARS_FILE, type LocalStackPorts } from '../../src/admin-api.js';
import { MODEL_ID } from './model-provider.js';

export interface StatusInput {
  ports: LocalStackPorts;
  sandbox: string;
  stateDir: string;
  host: string;
  defaultBase: number;
  /** The shell's ISSUER_URL, which credctl would otherwise follow. */
  issuerUrlEnv?: string;
  /** Set when the real gateway runs in place of the stand-in. */
  openclaw?: {
    version: string;
    /** The wrapper, relative to the clone (`.gateway/bin/openclaw`). */
    cli: string;
    /** The CLI profile's state folder (OPENCLAW_STATE_DIR), relative to the clone. */
    cliState: string;
    /** The throwaway home, relative to the clone. */
    home: string;
  };
  /** Fingerprint of the key the stand-in model provider accepts. */
  providerKey: string;
}

/** The model provider and the egress hop: the same with either gateway. */
function egressLines(s: StatusInput, url: (port: number) => string): string {
  return `  model    ${url(s.ports.modelProvider)}   stand-in model provider: accepts STANDIN_PROVIDER_KEY (key ${s.providerKey}) only
  egress   ${url(s.ports.egressHop)}   local egress hop: hands provider traffic to the Worker's egress handler (plain HTTP; production intercepts HTTPS)
  logs     ${s.stateDir}/logs/`;
}

/** The chat completion through the whole chain, as printed. */
function completionLines(issuer: string, model: string, note: string): string {
  const body = JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] });
  return `A chat completion (Worker -> proxy -> gateway -> egress hop -> the Worker's egress handler puts STANDIN_PROVIDER_KEY
in place of the gateway's sentinel -> stand-in model provider${note}):
  curl -s -X POST ${issuer}/v1/chat/completions -H 'content-type: application/json' -d '${body}'`;
}

function gatewayLines(s: StatusInput, url: (port: number) => string): string {
  const issuer = url(s.ports.issuer);
  if (!s.openclaw) {
    return `  gateway  ${url(s.ports.gateway)}   stand-in gateway: accepts only the agent's current GATEWAY_TOKEN
${egressLines(s, url)}

Through the whole chain (Worker mints an access token for DEV_USER -> proxy verifies it -> gateway):
  curl -s ${issuer}/hello

${completionLines(issuer, MODEL_ID, '')}`;
  }
  const o = s.openclaw;
  const ws = issuer.replace(/^http/, 'ws');
  return `  gateway  ${url(s.ports.gateway)}   OpenClaw ${o.version}, trusted-proxy mode; home ${o.home}/
${egressLines(s, url)}

The Control UI, through the whole chain (open it in a browser; the Worker signs you in as DEV_USER):
  ${issuer}/

The real OpenClaw CLI, through the whole chain (Worker -> verifying proxy -> gateway), no token
(its profile in ${o.cliState}/ names the Worker as its gateway; OpenClaw wants a token with --url):
  OPENCLAW_STATE_DIR=${o.cliState} ${o.cli} gateway call health --expect-url ${ws} --json

${completionLines(issuer, 'openclaw', '; an agent run, a few seconds')}`;
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
  proxy    ${url(s.ports.proxy)}   verifying proxy: checks the access token, ${s.openclaw ? 'sets X-Forwarded-User and -For from it' : 'presents GATEWAY_TOKEN'}
${gatewayLines(s, url)}

Then the operator CLI (for a local issuer it reads ADMIN_TOKEN from ${DEV_VARS_FILE}):
  ${cli} status                            keys, sandboxes, token expiry
  ${cli} keys rotate --force               rotate the signing key; the chain keeps working
  ${cli} audit --limit 10                  who got which token
  ${cli} token inspect - < ${s.stateDir}/agent/token   decode and verify the agent's token
  curl -s -X POST ${url(s.ports.agent)}/refresh   make the agent refresh now
  npm run dev:rotate -- STANDIN_PROVIDER_KEY    rotate an egress-delivered key as a deploy does (new value, Worker restarted; no agent refresh)
  npm run dev:rotate -- MOLTBOT_GATEWAY_TOKEN   rotate a delivered secret (new value, Worker restarted, agent pushed${s.openclaw ? ', gateway reloaded' : ''})
`;
}
