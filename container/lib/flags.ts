/**
 * Command-line flags with environment twins, shared by the agent and the verifying proxy: strict
 * parsing (an unknown flag is an error), a flag wins over its environment variable, and every
 * problem is one UsageError line naming the flag.
 */
import { type ParseArgsConfig, parseArgs } from 'node:util';

export class UsageError extends Error {
  override name = 'UsageError';
}

export interface Flags {
  values: Record<string, string | boolean | undefined>;
  /** The flag's value, else its environment twin's (empty counts as unset). */
  pick(flag: string, envName: string): string | undefined;
  /** Like pick, but a missing or blank value is a UsageError. */
  required(flag: string, envName: string): string;
  /** A port number (0-65535), or `fallback` when unset. */
  port(flag: string, envName: string, fallback: number): number;
}

/** Parses `argv` against `options`; `--help` throws a UsageError whose message is `usage`. */
export function readFlags(argv: string[], env: NodeJS.ProcessEnv, options: NonNullable<ParseArgsConfig['options']>, usage: string): Flags {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean' } }, strict: true, allowPositionals: false }));
  } catch (e) {
    throw new UsageError((e as Error).message.split('\n')[0]!);
  }
  if (values.help) throw new UsageError(usage);
  const pick = (flag: string, envName: string) => (values[flag] as string | undefined) ?? (env[envName] || undefined);
  return {
    values,
    pick,
    required(flag, envName) {
      const v = pick(flag, envName);
      if (v === undefined || v.trim() === '') throw new UsageError(`--${flag} (or ${envName}) is required`);
      return v.trim();
    },
    port(flag, envName, fallback) {
      const raw = pick(flag, envName);
      const port = raw === undefined ? fallback : /^\d+$/.test(raw.trim()) ? Number(raw) : NaN;
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--${flag}: must be a port number (0-65535)`);
      return port;
    },
  };
}

/** An absolute http(s) URL without credentials in it. */
export function httpUrl(flag: string, raw: string, example: string): URL {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new UsageError(`${flag}: must be an absolute http(s) URL such as ${example}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`${flag}: must be an http(s) URL such as ${example}`);
  if (u.username || u.password) throw new UsageError(`${flag}: must not carry credentials`);
  return u;
}
