/**
 * Help texts: the overall one (with the exit codes), one per group, one per command; the commands
 * and their usage lines come from the registry (registry.ts), which the dispatcher runs.
 */
import { DEV_VARS_FILE, LOCAL_ISSUER } from '../src/admin-api.js';
import { DEFAULT_TIMEOUT_SECONDS } from './options.js';
import { COMMANDS, type Command, synopsis } from './registry.js';

const GLOBAL_OPTIONS = `global options (anywhere on the line):
  --issuer URL                 the issuer (ISSUER_URL; default ${LOCAL_ISSUER})
  --admin-token TOKEN          admin bearer token (ADMIN_TOKEN; prefer it: flags show in ps)
  --access-client-id ID        Cloudflare Access service token id (CF_ACCESS_CLIENT_ID)
  --access-client-secret S     Cloudflare Access service token secret (CF_ACCESS_CLIENT_SECRET)
  --json                       machine-readable output (the API's JSON)
  --timeout SECONDS            per request, default ${DEFAULT_TIMEOUT_SECONDS}
  -h, --help                   help; credctl <command> --help for one command
  --version                    the version`;

const EXIT_CODES = `exit codes:
  0  ok
  1  the issuer answered with an error (its code and description are shown)
  2  usage or bad input: unknown command or flag, missing argument, bad value, malformed token,
     output file exists
  3  not authorized: the issuer refused the credentials (401/403), or none are available
  4  the issuer is unreachable (refused, DNS, timeout), or its answer is not the API's JSON
  5  token inspect: the token does not verify (signature, unknown kid, expired, wrong issuer)`;

/** The command and its synopsis, as the usage line starts. */
function head(c: Command): string {
  const s = synopsis(c);
  return `${c.name}${s ? ` ${s}` : ''}`;
}

function line(c: Command): string {
  return `  ${head(c).padEnd(37)}${c.summary}`;
}

export function overallHelp(): string {
  return `credctl: operate a credential issuer (signing keys, sandboxes, audit, tokens)

usage: credctl <command> [options]

commands:
${COMMANDS.map(line).join('\n')}

${GLOBAL_OPTIONS}

With a loopback issuer and no ADMIN_TOKEN, the admin token is read from ./${DEV_VARS_FILE} (npm run dev
writes it there). Admin credentials are never sent over plain http to another machine.

${EXIT_CODES}`;
}

export function groupHelp(group: string): string {
  const cmds = COMMANDS.filter((c) => c.name.startsWith(`${group} `));
  return `usage: credctl ${group} <${cmds.map((c) => c.name.split(' ')[1]).join('|')}> [options]

${cmds.map(line).join('\n')}

credctl ${group} <command> --help for one command; credctl --help for global options and exit codes.`;
}

export function commandHelp(c: Command): string {
  return `usage: credctl ${head(c)} [global options]

${c.summary}.

${c.details}

credctl --help for global options and exit codes.`;
}
