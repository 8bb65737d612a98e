/**
 * The agent's files: `token`, `credentials.json` and `state.json` in one directory (mode 0700),
 * each written atomically: a temp file in the same directory, fsync, rename over the old one,
 * fsync of the directory. A reader sees the old file or the new one, never a mix, even if the
 * agent is killed mid-write (docs/architecture.md, "Agent restart and crash safety").
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { CREDENTIALS_FILE } from '../../src/admin-api.js';
import { AgentError, describeErrno } from './errors.js';

/** The agent's own files next to CREDENTIALS_FILE (the contract's: the gateway reads it too). */
export const TOKEN_FILE = 'token';
export const STATE_FILE = 'state.json';
const TEMP_PREFIX = '.tmp-';

/** What the agent remembers across restarts. Identifiers and times only: no token, no secret. */
export interface AgentState {
  /** Epoch seconds. */
  expires_at?: number;
  issued_at?: number;
  kid?: string;
  jti?: string;
  credentials_version?: string;
  /** The credentials version the change hook last ran for successfully. */
  hook_version?: string;
  last_refresh?: string;
  last_error?: string;
  consecutive_failures?: number;
}

/** Creates the directory with mode 0700 (tightening it if it exists) and removes temp files a crash left. */
export async function prepareDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  for (const name of await readdir(dir)) {
    if (name.startsWith(TEMP_PREFIX)) await unlink(join(dir, name)).catch(() => undefined);
  }
}

/**
 * Writes `data` to `dir/name` atomically with mode 0600. Any failure (ENOSPC, EISDIR, EACCES, ...)
 * is an AgentError `write_failed` naming `dir/name`; the temp file is removed, and the old file is
 * untouched unless the rename itself happened (then only the directory fsync failed).
 */
export async function writeAtomic(dir: string, name: string, data: string): Promise<void> {
  const path = join(dir, name);
  const tmp = join(dir, `${TEMP_PREFIX}${name}-${randomBytes(6).toString('hex')}`);
  const failed = (e: unknown) => new AgentError('write_failed', `cannot write ${path} (${describeErrno(e)})`, { path });
  let renamed = false;
  try {
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    renamed = true;
    // The rename is durable only once the directory entry is: fsync the directory too.
    const d = await open(dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch (e) {
    // A full disk leaves the temp file empty or short: never leave it behind.
    if (!renamed) await unlink(tmp).catch(() => undefined);
    throw failed(e);
  }
}

/** A file a previous run left that cannot be used; logged by name and reason, never its content. */
export interface FileProblem {
  file: string;
  path: string;
  reason: string;
}

/** One file as a previous run left it: its text and when it was written (epoch ms, this machine's clock). */
export interface SavedFile {
  path: string;
  text: string;
  writtenAt: number;
}

/** What readBack found, unparsed: restore.ts decides what of it can be used. */
export interface SavedFiles {
  dir: string;
  token?: SavedFile;
  credentials?: SavedFile;
  state?: SavedFile;
  /** Files that exist but cannot be read. */
  problems: FileProblem[];
}

type Read = { file?: SavedFile; problem?: FileProblem };

async function readOptional(dir: string, name: string): Promise<Read> {
  const path = join(dir, name);
  try {
    const [text, st] = await Promise.all([readFile(path, 'utf8'), stat(path)]);
    return { file: { path, text, writtenAt: st.mtimeMs } };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    // A `token` that is a directory, an unreadable file: not fatal, the first refresh replaces it.
    return { problem: { file: name, path, reason: `unreadable (${describeErrno(e)})` } };
  }
}

/** What a previous run left in `dir`. Each file is whole or absent (atomic writes); one that cannot be read is reported and counts as absent. */
export async function readBack(dir: string): Promise<SavedFiles> {
  const [token, credentials, state] = await Promise.all([
    readOptional(dir, TOKEN_FILE),
    readOptional(dir, CREDENTIALS_FILE),
    readOptional(dir, STATE_FILE),
  ]);
  return {
    dir,
    token: token.file,
    credentials: credentials.file,
    state: state.file,
    problems: [token.problem, credentials.problem, state.problem].filter((p): p is FileProblem => p !== undefined),
  };
}
