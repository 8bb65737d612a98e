/**
 * One run of the CLI: parse argv (strict: an unknown flag is an error; global options anywhere on
 * the line), pick the command, check its arguments and flags, run it, and turn every failure into
 * one line on stderr and an exit code. Takes the process as parameters, so tests can drive it.
 */
import { parseArgs } from 'node:util';
import { KID } from '../src/admin-api.js';
import { IssuerClient } from './client.js';
import type { Flags, Io } from './commands.js';
import { CliError, EXIT, oneLine, redact, usageError } from './errors.js';
import { type RawGlobals, resolveGlobals, secretsOf } from './options.js';
import { COMMANDS, type Command, findCommand, GROUPS } from './registry.js';
import { commandHelp, groupHelp, overallHelp } from './usage.js';
import { version } from './version.js';

/** The options every command takes, anywhere on the line. */
const GLOBAL_OPTIONS = {
  issuer: { type: 'string' },
  'admin-token': { type: 'string' },
  'access-client-id': { type: 'string' },
  'access-client-secret': { type: 'string' },
  json: { type: 'boolean' },
  timeout: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
} as const;

type OptionSpec = { type: 'string' | 'boolean'; short?: string };

/** Every option parseArgs knows: the global ones and each command's own (registry.ts), a flag with a value being a string. */
const OPTIONS: Record<string, OptionSpec> = { ...GLOBAL_OPTIONS };
for (const c of COMMANDS) for (const f of c.flags) OPTIONS[f.name] = { type: f.value === undefined ? 'boolean' : 'string' };

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
    const isValue = prev !== undefined && /^--[a-z-]+$/.test(prev) && OPTIONS[prev.slice(2)]?.type === 'string';
    (arg.startsWith('-') && KID.test(arg) && !isValue ? kids : rest).push(arg);
  });
  return kids.length === 0 ? argv : [...rest, '--', ...kids];
}

/** What parseArgs gives: the global options and any command's flags (checked against the command after). */
type Values = RawGlobals & Flags & { help?: boolean; version?: boolean };

function parse(argv: string[]): { values: Values; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({ args: kidsAsPositionals(argv), options: OPTIONS, strict: true, allowPositionals: true });
    return { values: values as Values, positionals };
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
function resolveCommand(pos: string[]): { command: Command; args: string[] } | { group: string } | undefined {
  const [first, second] = pos;
  if (first === undefined) return undefined;
  if (GROUPS.includes(first)) {
    if (second === undefined) return { group: first };
    const command = findCommand(`${first} ${second}`);
    if (!command) throw usageError(`unknown ${first} command${echo(second)}; see credctl ${first} --help`);
    return { command, args: pos.slice(2) };
  }
  const command = findCommand(first);
  if (!command) throw usageError(`unknown command${echo(first)}; see credctl --help`);
  return { command, args: pos.slice(1) };
}

function helpFor(pos: string[]): string {
  const found = resolveCommand(pos);
  if (found === undefined) return overallHelp();
  if ('group' in found) return groupHelp(found.group);
  return commandHelp(found.command);
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
    const { command } = found;
    const name = command.name;
    for (const key of Object.keys(values)) {
      if (!Object.hasOwn(GLOBAL_OPTIONS, key) && !command.flags.some((f) => f.name === key)) {
        throw usageError(`--${key} is not an option of credctl ${name}; see credctl ${name} --help`);
      }
    }
    if (found.args.length < command.args.length) throw usageError(`credctl ${name}: missing argument; see credctl ${name} --help`);
    if (found.args.length > command.args.length) throw usageError(`credctl ${name}: too many arguments; see credctl ${name} --help`);

    const globals = resolveGlobals(values, env, io.cwd);
    secrets.push(...secretsOf(globals.credentials));
    const client = new IssuerClient({ issuer: globals.issuer, credentials: globals.credentials, timeoutMs: globals.timeoutMs });
    await command.run({ globals, client, io }, found.args, values);
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
