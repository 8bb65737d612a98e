/**
 * The CLI's one command registry: every command with its usage (arguments, its own flags, summary,
 * details) and its handler. The help texts (usage.ts) and the dispatcher (dispatch.ts) both read
 * this table, so a command cannot be listed without running, nor run without being listed.
 */
import { AUDIT_MAX_LIMIT, SANDBOX_PAGE_MAX } from '../src/admin-api.js';
import type { Context, Flags } from './commands.js';
import * as cmd from './commands.js';

/** A flag of one command: a switch, or with a value named `value` in the usage line. */
interface CommandFlag {
  name: keyof Flags;
  value?: string;
}

export interface Command {
  /** e.g. "keys rotate": a group and a verb, or one word. */
  name: string;
  /** Its positional arguments as the usage line names them; the dispatcher takes exactly these many. */
  args: string[];
  /** Its own flags, beyond the global ones, in usage order. */
  flags: CommandFlag[];
  summary: string;
  details: string;
  run(ctx: Context, args: string[], flags: Flags): Promise<void>;
}

export const COMMANDS: readonly Command[] = [
  {
    name: 'status',
    args: [],
    flags: [],
    summary: 'signing keys on a timeline, the rotation schedule, sandboxes',
    details: `One screen: the signing keys (state, age, when each signs, retires and leaves the JWKS) on a
small timeline up to the next rotation, the rotation schedule, and every sandbox with its last
refresh, token expiry, credentials version and whether it is revoked. The credentials line says
how each CREDENTIALS entry is delivered: its value, derived, or egress -> hosts (header), where
the container holds a sentinel and the Sandbox outbound handler adds the value. Never a value.
--json: {"issuer", "keys": <GET /api/admin/keys>, "sandboxes": [<status>, ...]}`,
    run: (c) => cmd.status(c),
  },
  {
    name: 'keys list',
    args: [],
    flags: [],
    summary: 'signing keys with their states and times, the schedule',
    details: `Every signing key (next, active, retiring, and the last removed ones) with full kids.
--json: the API's listing {"keys", "schedule"}.`,
    run: (c) => cmd.keysList(c),
  },
  {
    name: 'keys rotate',
    args: [],
    flags: [{ name: 'force' }],
    summary: 'rotate now: next becomes active, active retires',
    details: `Refused (409 rotation_too_soon) while the next key has been published for less than
JWKS_MAX_AGE + CLOCK_SKEW, since a verifier may not know it yet.
  --force   rotate anyway (verifiers with an older JWKS refuse new tokens until they refetch)
--json: the API's listing after the rotation.`,
    run: (c, _a, f) => cmd.keysRotate(c, f),
  },
  {
    name: 'keys revoke',
    args: ['<kid>'],
    flags: [],
    summary: 'remove a key from the JWKS now',
    details: `The key leaves the JWKS at once: every token it signed stops verifying once verifiers refetch.
A revoked active key is replaced by the next key. <kid> is the full kid (credctl keys list).
--json: the API's listing after the revocation.`,
    run: (c, a) => cmd.keysRevoke(c, a[0]),
  },
  {
    name: 'sandbox list',
    args: [],
    flags: [
      { name: 'limit', value: 'N' },
      { name: 'cursor', value: 'C' },
    ],
    summary: "sandboxes' status, one page at a time",
    details: `The Worker's own sandbox (SANDBOX_ID) first, then the newest.
  --limit N      at most N sandboxes, 1 to ${SANDBOX_PAGE_MAX} (default 100)
  --cursor C     the page after the one that printed this cursor
--json: {"sandboxes": [<status>, ...], "total", "next_cursor"?}`,
    run: (c, _a, f) => cmd.sandboxList(c, f),
  },
  {
    name: 'sandbox status',
    args: ['<id>'],
    flags: [],
    summary: "one sandbox's status",
    details: `Its state, keys and times, and how each CREDENTIALS entry is delivered (value, derived, egress).
--json: the API's status {"sandbox", "exists", "revoked", ..., "credentials"?: [{"name", "delivery", "hosts"?, "header"?}]}`,
    run: (c, a) => cmd.sandboxStatus(c, a[0]),
  },
  {
    name: 'sandbox bootstrap',
    args: ['<id>'],
    flags: [{ name: 'out', value: 'FILE' }],
    summary: 'a new bootstrap file (it holds a private key)',
    details: `The sandbox's previous bootstrap key stops working at once. The file holds a private key:
  --out FILE   write it to FILE, created with mode 0600; an existing file is never overwritten
Without --out it is printed only when stdout is not a terminal:
  credctl sandbox bootstrap main > boot.json
--json (with --out): {"sandbox", "kid", "file"}.`,
    run: (c, a, f) => cmd.sandboxBootstrap(c, a[0], f),
  },
  {
    name: 'sandbox revoke',
    args: ['<id>'],
    flags: [],
    summary: 'revoke: its key and refreshes fail until a new bootstrap',
    details: `--json: the sandbox's status after the revocation.`,
    run: (c, a) => cmd.sandboxRevoke(c, a[0]),
  },
  {
    name: 'sandbox refresh',
    args: ['<id>'],
    flags: [],
    summary: "ask the sandbox's agent to refresh now",
    details: `A Worker whose gateway is GATEWAY_UPSTREAM (the local stack) answers 503 gateway_unavailable;
a container that does not answer, 502 bad_gateway.
--json: {"sandbox", "refresh"}.`,
    run: (c, a) => cmd.sandboxRefresh(c, a[0]),
  },
  {
    name: 'gateway restart',
    args: [],
    flags: [],
    summary: "restart the gateway in the Worker's sandbox with a new bootstrap key",
    details: `Kills start.sh in the sandbox named by SANDBOX_ID and starts it again with a fresh bootstrap key;
the previous key is refused at once. A Worker whose gateway is GATEWAY_UPSTREAM (the local stack)
answers 503 gateway_unavailable; a container that does not answer, 502 bad_gateway.
--json: {"sandbox", "started"}.`,
    run: (c) => cmd.gatewayRestart(c),
  },
  {
    name: 'audit',
    args: [],
    flags: [
      { name: 'sandbox', value: 'ID' },
      { name: 'limit', value: 'N' },
    ],
    summary: 'audit events, newest first',
    details: `  --sandbox ID   one sandbox's events (default: deployment events and those of up to 100
                 sandboxes, the Worker's own first; the output says when some were not read)
  --limit N      at most N events and N refusal counts, 1 to ${AUDIT_MAX_LIMIT} (default 50)
Refusals of the Sandbox outbound handler (code egress:<rule>) read "egress refused: <rule>".
--json: the API's body {"events": [...], "refusals": [...], "sandboxes"?}.`,
    run: (c, _a, f) => cmd.audit(c, f),
  },
  {
    name: 'token inspect',
    args: ['<jwt|->'],
    flags: [],
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
    run: (c, a) => cmd.tokenInspect(c, a[0]),
  },
];

/** Arguments and flags as the usage line shows them, e.g. "<id> [--out FILE]". */
export function synopsis(c: Command): string {
  return [...c.args, ...c.flags.map((f) => `[--${f.name}${f.value ? ` ${f.value}` : ''}]`)].join(' ');
}

/** The groups (the first word of two-word commands), in the table's order. */
export const GROUPS: readonly string[] = [...new Set(COMMANDS.filter((c) => c.name.includes(' ')).map((c) => c.name.split(' ')[0]!))];

export function findCommand(name: string): Command | undefined {
  return COMMANDS.find((c) => c.name === name);
}
