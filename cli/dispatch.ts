/**
 * One run of the CLI: parse argv (strict: an unknown flag is an error; global options anywhere on
 * the line), pick the command, check its arguments and flags, run it, and turn every failure into
 * one line on stderr and an exit code. Takes the process as parameters, so tests can drive it.
 */
import { parseArgs } from 'node:util';
import { KID } from './api.js';
import { IssuerClient } from './client.js';
import * as cmd from './commands.js';
import type { Context, Flags, Io } from './commands.js';
import { CliError, EXIT, oneLine, redact, usageError } from './errors.js';
import { resolveGlobals, secretsOf, type RawGlobals } from './options.js';
import { COMMANDS, commandHelp, GROUPS, groupHelp, overallHelp } from './usage.js';
import { version } from './version.js';

const OPTIONS = {
  issuer: { type: 'string' },
  'admin-token': { type: 'string' },
  'access-client-id': { type: 'string' },
  'access-client-secret': { type: 'string' },
  json: { type: 'boolean' },
  timeout: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
  force: { type: 'boolean' },
  out: { type: 'string' },
  sandbox: { type: 'string' },
  limit: { type: 'string' },
  cursor: { type: 'string' },
} as const;

const GLOBAL_FLAGS = new Set(['issuer', 'admin-token', 'access-client-id', 'access-client-secret', 'json', 'timeout', 'help', 'version']);

interface Command {
  /** How many positional arguments it takes. */
  args: number;
  /** Its own flags, beyond the global ones. */
  flags: (keyof Flags)[];
  run(ctx: Context, args: string[], flags: Flags): Promise<void>;
}

const TABLE: Record<string, Command> = {
  status: { args: 0, flags: [], run: (c) => cmd.status(c) },
  'keys list': { args: 0, flags: [], run: (c) => cmd.keysList(c) },
  'keys rotate': { args: 0, flags: ['force'], run: (c, _a, f) => cmd.keysRotate(c, f) },
  'keys revoke': { args: 1, flags: [], run: (c, a) => cmd.keysRevoke(c, a[0]) },
  'sandbox list': { args: 0, flags: ['limit', 'cursor'], run: (c, _a, f) => cmd.sandboxList(c, f) },
  'sandbox status': { args: 1, flags: [], run: (c, a) => cmd.sandboxStatus(c, a[0]) },
  'sandbox bootstrap': { args: 1, flags: ['out'], run: (c, a, f) => cmd.sandboxBootstrap(c, a[0], f) },
  'sandbox revoke': { args: 1, flags: [], run: (c, a) => cmd.sandboxRevoke(c, a[0]) },
  'sandbox refresh': { args: 1, flags: [], run: (c, a) => cmd.sandboxRefresh(c, a[0]) },
  'gateway restart': { args: 0, flags: [], run: (c) => cmd.gatewayRestart(c) },
  audit: { args: 0, flags: ['sandbox', 'limit'], run: (c, _a, f) => cmd.audit(c, f) },
  'token inspect': { args: 1, flags: [], run: (c, a) => cmd.tokenInspect(c, a[0]) },
};

/** A word the user typed, echoed only when it looks like a command name: never a pasted token. */
function echo(word: string): string {
  return /^[a-z][a-z-]{0,20}$/.test(word) ? ` "${word}"` : '';
}

/**
 * A kid is base64url and may begin with "-" (1 in 64 do), which parseArgs would take for an
 * unknown option. An argument of a kid's exact shape is never an option (none is 43 characters of
 * that alphabet), so unless it is the value of a string option, it goes after "--" as a positional.
 */
function kidsAsPositionals(argv: string[]): string[] {
  if (argv.includes('--')) return argv;
  const rest: string[] = [];
  const kids: string[] = [];
  argv.forEach((arg, i) => {
    const prev = argv[i - 1];
    const isValue = prev !== undefined && /^--[a-z-]+$/.test(prev) && OPTIONS[prev.slice(2) as keyof typeof OPTIONS]?.type === 'string';
    (arg.startsWith('-') && KID.test(arg) && !isValue ? kids : rest).push(arg);
  });
  return kids.length === 0 ? argv : [...rest, '--', ...kids];
}

function parse(argv: string[]) {
  try {
    return parseArgs({ args: kidsAsPositionals(argv), options: OPTIONS, strict: true, allowPositionals: true });
  } catch (e) {
    const err = e as { code?: string; message?: string };
    if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      const name = /'(-[^']*)'/.exec(err.message ?? '')?.[1];
      throw usageError(`unknown option${name && /^--?[a-z][a-z-]{0,30}$/.test(name) ? ` ${name}` : ''}; see credctl --help`);
    }
    throw usageError(`${oneLine((err.message ?? 'bad arguments').split('\n')[0]!, 200)}; see credctl --help`);
  }
}

/** Splits positionals into the command's name and its arguments; undefined: help or nothing. */
function resolveCommand(pos: string[]): { name: string; args: string[] } | { group: string } | undefined {
  const [first, second] = pos;
  if (first === undefined) return undefined;
  if ((GROUPS as readonly string[]).includes(first)) {
    if (second === undefined) return { group: first };
    const name = `${first} ${second}`;
    if (!TABLE[name]) throw usageError(`unknown ${first} command${echo(second)}; see credctl ${first} --help`);
    return { name, args: pos.slice(2) };
  }
  if (!TABLE[first]) throw usageError(`unknown command${echo(first)}; see credctl --help`);
  return { name: first, args: pos.slice(1) };
}

function helpFor(pos: string[]): string {
  const found = resolveCommand(pos);
  if (found === undefined) return overallHelp();
  if ('group' in found) return groupHelp(found.group);
  return commandHelp(COMMANDS.find((c) => c.name === found.name)!);
}

export async function run(argv: string[], io: Io, env: NodeJS.ProcessEnv): Promise<number> {
  const secrets: (string | undefined)[] = [env.ADMIN_TOKEN, env.CF_ACCESS_CLIENT_SECRET];
  try {
    const { values, positionals } = parse(argv);
    secrets.push(values['admin-token'], values['access-client-secret']);
    if (values.version) {
      io.out(`credctl ${version()}`);
      return EXIT.ok;
    }
    if (positionals[0] === 'help') {
      io.out(helpFor(positionals.slice(1)));
      return EXIT.ok;
    }
    if (values.help) {
      io.out(helpFor(positionals));
      return EXIT.ok;
    }
    const found = resolveCommand(positionals);
    if (found === undefined) throw usageError('missing command; see credctl --help');
    if ('group' in found) throw usageError(`missing ${found.group} command; see credctl ${found.group} --help`);
    const command = TABLE[found.name]!;
    for (const key of Object.keys(values)) {
      if (!GLOBAL_FLAGS.has(key) && !(command.flags as string[]).includes(key)) {
        throw usageError(`--${key} is not an option of credctl ${found.name}; see credctl ${found.name} --help`);
      }
    }
    if (found.args.length < command.args) throw usageError(`credctl ${found.name}: missing argument; see credctl ${found.name} --help`);
    if (found.args.length > command.args) throw usageError(`credctl ${found.name}: too many arguments; see credctl ${found.name} --help`);

    const globals = resolveGlobals(values as RawGlobals, env, io.cwd);
    secrets.push(...secretsOf(globals.credentials));
    const client = new IssuerClient({ issuer: globals.issuer, credentials: globals.credentials, timeoutMs: globals.timeoutMs });
    await command.run({ globals, client, io }, found.args, values as Flags);
    return EXIT.ok;
  } catch (e) {
    if (e instanceof CliError) {
      io.err(`credctl: ${redact(oneLine(e.message, 1000), secrets)}`);
      return e.exitCode;
    }
    const what = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    io.err(`credctl: unexpected error (${redact(oneLine(what, 300), secrets)})`);
    return EXIT.issuer;
  }
}
