/**
 * Help texts: the overall one (with the exit codes), one per group, one per command.
 */

export const GLOBAL_OPTIONS = `global options (anywhere on the line):
  --issuer URL                 the issuer (ISSUER_URL; default http://127.0.0.1:8787)
  --admin-token TOKEN          admin bearer token (ADMIN_TOKEN; prefer it: flags show in ps)
  --access-client-id ID        Cloudflare Access service token id (CF_ACCESS_CLIENT_ID)
  --access-client-secret S     Cloudflare Access service token secret (CF_ACCESS_CLIENT_SECRET)
  --json                       machine-readable output (the API's JSON)
  --timeout SECONDS            per request, default 10
  -h, --help                   help; credctl <command> --help for one command
  --version                    the version`;

export const EXIT_CODES = `exit codes:
  0  ok
  1  the issuer answered with an error (its code and description are shown)
  2  usage or bad input: unknown command or flag, missing argument, bad value, malformed token,
     output file exists
  3  not authorized: the issuer refused the credentials (401/403), or none are available
  4  the issuer is unreachable (refused, DNS, timeout), or its answer is not the API's JSON
  5  token inspect: the token does not verify (signature, unknown kid, expired, wrong issuer)`;

export interface CommandHelp {
  /** e.g. "keys rotate" */
  name: string;
  /** Arguments and command options as in the usage line. */
  synopsis: string;
  summary: string;
  details: string;
}

export const COMMANDS: CommandHelp[] = [
  {
    name: 'status',
    synopsis: '',
    summary: 'signing keys on a timeline, the rotation schedule, sandboxes',
    details: `One screen: the signing keys (state, age, when each signs, retires and leaves the JWKS) on a
small timeline up to the next rotation, the rotation schedule, and every sandbox with its last
refresh, token expiry, credentials version and whether it is revoked. The credentials line says
how each CREDENTIALS entry is delivered: its value, derived, or egress -> hosts (header), where
the container holds a sentinel and the Sandbox outbound handler adds the value. Never a value.
--json: {"issuer", "keys": <GET /api/admin/keys>, "sandboxes": [<status>, ...]}`,
  },
  {
    name: 'keys list',
    synopsis: '',
    summary: 'signing keys with their states and times, the schedule',
    details: `Every signing key (next, active, retiring, and the last removed ones) with full kids.
--json: the API's listing {"keys", "schedule"}.`,
  },
  {
    name: 'keys rotate',
    synopsis: '[--force]',
    summary: 'rotate now: next becomes active, active retires',
    details: `Refused (409 rotation_too_soon) while the next key has been published for less than
JWKS_MAX_AGE + CLOCK_SKEW, since a verifier may not know it yet.
  --force   rotate anyway (verifiers with an older JWKS refuse new tokens until they refetch)
--json: the API's listing after the rotation.`,
  },
  {
    name: 'keys revoke',
    synopsis: '<kid>',
    summary: 'remove a key from the JWKS now',
    details: `The key leaves the JWKS at once: every token it signed stops verifying once verifiers refetch.
A revoked active key is replaced by the next key. <kid> is the full kid (credctl keys list).
--json: the API's listing after the revocation.`,
  },
  {
    name: 'sandbox list',
    synopsis: '[--limit N] [--cursor C]',
    summary: "sandboxes' status, one page at a time",
    details: `The Worker's own sandbox (SANDBOX_ID) first, then the newest.
  --limit N      at most N sandboxes, 1 to 1000 (default 100)
  --cursor C     the page after the one that printed this cursor
--json: {"sandboxes": [<status>, ...], "total", "next_cursor"?}`,
  },
  {
    name: 'sandbox status',
    synopsis: '<id>',
    summary: "one sandbox's status",
    details: `Its state, keys and times, and how each CREDENTIALS entry is delivered (value, derived, egress).
--json: the API's status {"sandbox", "exists", "revoked", ..., "credentials"?: [{"name", "delivery", "hosts"?, "header"?}]}`,
  },
  {
    name: 'sandbox bootstrap',
    synopsis: '<id> [--out FILE]',
    summary: 'a new bootstrap file (it holds a private key)',
    details: `The sandbox's previous bootstrap key stops working at once. The file holds a private key:
  --out FILE   write it to FILE, created with mode 0600; an existing file is never overwritten
Without --out it is printed only when stdout is not a terminal:
  credctl sandbox bootstrap main > boot.json
--json (with --out): {"sandbox", "kid", "file"}.`,
  },
  {
    name: 'sandbox revoke',
    synopsis: '<id>',
    summary: 'revoke: its key and refreshes fail until a new bootstrap',
    details: `--json: the sandbox's status after the revocation.`,
  },
  {
    name: 'sandbox refresh',
    synopsis: '<id>',
    summary: "ask the sandbox's agent to refresh now",
    details: `A Worker whose gateway is GATEWAY_UPSTREAM (the local stack) answers 503 gateway_unavailable;
a container that does not answer, 502 bad_gateway.
--json: {"sandbox", "refresh"}.`,
  },
  {
    name: 'gateway restart',
    synopsis: '',
    summary: "restart the gateway in the Worker's sandbox with a new bootstrap key",
    details: `Kills start.sh in the sandbox named by SANDBOX_ID and starts it again with a fresh bootstrap key;
the previous key is refused at once. A Worker whose gateway is GATEWAY_UPSTREAM (the local stack)
answers 503 gateway_unavailable; a container that does not answer, 502 bad_gateway.
--json: {"sandbox", "started"}.`,
  },
  {
    name: 'audit',
    synopsis: '[--sandbox ID] [--limit N]',
    summary: 'audit events, newest first',
    details: `  --sandbox ID   one sandbox's events (default: deployment events and those of up to 100
                 sandboxes, the Worker's own first; the output says when some were not read)
  --limit N      at most N events and N refusal counts, 1 to 500 (default 50)
Refusals of the Sandbox outbound handler (code egress:<rule>) read "egress refused: <rule>".
--json: the API's body {"events": [...], "refusals": [...], "sandboxes"?}.`,
  },
  {
    name: 'token inspect',
    synopsis: '<jwt|->',
    summary: 'decode and verify a token (- reads stdin)',
    details: `Verifies as a gateway would: EdDSA only, the kid in the issuer's JWKS, exp and nbf with 30 s
of clock tolerance, iss equal to the issuer URL (the audience is shown, not checked). Shows the
verdict, the kind of token, the kid (and its state when admin credentials are available), the
times, the subject, audience, client id, scope and other claims, and for an agent token which
credentials are egress-delivered (cred_egress). Never the token itself, its signature, nor the
encrypted credentials it may carry. No admin credentials are needed.
An egress sentinel (typ egress+jwt) verifies the same way, with aud egress: shown are its entry,
hosts, sandbox, cnf.jkt (with admin credentials: whether it is the sandbox's current bootstrap
key), times and jti. It is no access token: only the Sandbox outbound handler uses it.
  credctl token inspect - < token
--json: {"valid", "kind", "reason"?, "reason_description"?, "header", "claims", "kid_in_jwks",
"kid_state"?, "sandbox_check"?}
Exit code 5 when the token does not verify.`,
  },
];

export const GROUPS = ['keys', 'sandbox', 'gateway', 'token'] as const;

function line(c: CommandHelp): string {
  const head = `${c.name}${c.synopsis ? ` ${c.synopsis}` : ''}`;
  return `  ${head.padEnd(37)}${c.summary}`;
}

export function overallHelp(): string {
  return `credctl: operate a credential issuer (signing keys, sandboxes, audit, tokens)

usage: credctl <command> [options]

commands:
${COMMANDS.map(line).join('\n')}

${GLOBAL_OPTIONS}

With a loopback issuer and no ADMIN_TOKEN, the admin token is read from ./.dev.vars (npm run dev
writes it there). Admin credentials are never sent over plain http to another machine.

${EXIT_CODES}`;
}

export function groupHelp(group: string): string {
  const cmds = COMMANDS.filter((c) => c.name.startsWith(`${group} `));
  return `usage: credctl ${group} <${cmds.map((c) => c.name.split(' ')[1]).join('|')}> [options]

${cmds.map(line).join('\n')}

credctl ${group} <command> --help for one command; credctl --help for global options and exit codes.`;
}

export function commandHelp(c: CommandHelp): string {
  return `usage: credctl ${c.name}${c.synopsis ? ` ${c.synopsis}` : ''} [global options]

${c.summary}.

${c.details}

credctl --help for global options and exit codes.`;
}
