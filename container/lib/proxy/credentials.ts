/**
 * The upstream credential, read from the agent's credentials.json and never served past a change.
 *
 * The agent replaces the file atomically (temp file, fsync, rename), so a change is a new inode.
 * Every read stats the path (about a microsecond) and compares device, inode, size, mtime and
 * ctime with those of the copy in memory; any difference re-reads the file. A watch
 * on the directory is a second signal: it catches the one change stat could miss (the kernel
 * reusing the old inode for a same-size file within one timestamp tick). A watch alone would not
 * do: its event arrives after the rename, and a request in between would carry the old value.
 */
import { closeSync, type FSWatcher, fstatSync, openSync, readSync, type Stats, statSync, watch } from 'node:fs';
import { dirname } from 'node:path';
import type { CredentialsFile } from '../../../src/admin-api.js';

/** credentials.json holds a handful of short values; anything bigger is not the agent's file. */
const MAX_CREDENTIALS_BYTES = 256 * 1024;
/** A value goes into a header: visible ASCII only, so it can never split or inject a header. */
const HEADER_SAFE = /^[\x21-\x7e]+$/;

export type CredentialState =
  | { ok: true; value: string; version: string | null }
  | { ok: false; reason: 'missing_file' | 'unreadable' | 'invalid_json' | 'missing_value' | 'invalid_value' };

export interface CredentialSource {
  /** The credential as the file holds it now. */
  read(): CredentialState;
  close(): void;
}

/**
 * Number stats, not bigint: cheaper (no Date objects), and `mtimeMs`/`ctimeMs` as doubles still
 * resolve about 0.25 µs at today's epoch, finer than the kernel's timestamp tick.
 */
function signature(s: Stats): string {
  return `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
}

function parse(text: string, name: string): CredentialState {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'invalid_json' };
  }
  // The contract's CredentialsFile, as JSON arrives: each member checked before use.
  const file = doc as { [K in keyof CredentialsFile]?: unknown } | null;
  const values = file?.values;
  if (typeof values !== 'object' || values === null) return { ok: false, reason: 'invalid_json' };
  const value = (values as Record<string, unknown>)[name];
  if (typeof value !== 'string' || value === '') return { ok: false, reason: 'missing_value' };
  if (!HEADER_SAFE.test(value)) return { ok: false, reason: 'invalid_value' };
  const version = file!.version;
  return { ok: true, value, version: typeof version === 'string' ? version : null };
}

export function createCredentialSource(
  path: string,
  name: string,
  onWatchError: (code: string) => void = () => undefined,
): CredentialSource {
  let cachedSig: string | null = null;
  let cached: CredentialState = { ok: false, reason: 'missing_file' };
  let dirty = true;
  let watcher: FSWatcher | undefined;
  let closed = false;

  function ensureWatch(): void {
    if (watcher || closed) return;
    try {
      // Any event in the directory: the file's own name may not be reported (renames, some
      // platforms), and a spurious re-read costs one small file read.
      watcher = watch(dirname(path), { persistent: false }, () => {
        dirty = true;
      });
      watcher.on('error', (e: NodeJS.ErrnoException) => {
        onWatchError(e.code ?? 'error');
        watcher?.close();
        watcher = undefined;
        dirty = true;
      });
    } catch (e) {
      // The directory may not exist yet (the agent creates it); stat still guards every read.
      onWatchError((e as NodeJS.ErrnoException).code ?? 'error');
    }
  }

  function load(): CredentialState {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (e) {
      cachedSig = null;
      return { ok: false, reason: (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing_file' : 'unreadable' };
    }
    try {
      // The signature comes from the descriptor that is read: it describes exactly these bytes.
      const st = fstatSync(fd);
      if (st.size > MAX_CREDENTIALS_BYTES) {
        cachedSig = signature(st);
        return { ok: false, reason: 'unreadable' };
      }
      const buf = Buffer.alloc(Number(st.size));
      let off = 0;
      while (off < buf.length) {
        const n = readSync(fd, buf, off, buf.length - off, off);
        if (n === 0) break;
        off += n;
      }
      cachedSig = signature(st);
      return parse(buf.subarray(0, off).toString('utf8'), name);
    } catch {
      cachedSig = null;
      return { ok: false, reason: 'unreadable' };
    } finally {
      closeSync(fd);
    }
  }

  return {
    read() {
      ensureWatch();
      const st = statSync(path, { throwIfNoEntry: false });
      if (st === undefined) {
        cachedSig = null;
        cached = { ok: false, reason: 'missing_file' };
        return cached;
      }
      if (dirty || cachedSig !== signature(st)) {
        dirty = false;
        cached = load();
      }
      return cached;
    },
    close() {
      closed = true;
      watcher?.close();
      watcher = undefined;
    },
  };
}
