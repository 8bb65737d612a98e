/**
 * Which sandbox ids were ever bootstrapped, as the token endpoint asks it before it addresses a
 * SandboxAuthority. Addressing a Durable Object is enough to create it (a database per id, even
 * if it never writes), so an unauthenticated request that names a made-up id must not reach one:
 * the KeyAuthority's registry (`sandboxes` table, written by every bootstrap) answers instead.
 *
 * Known ids are kept in the isolate (a sandbox never leaves the registry; revocation is the
 * SandboxAuthority's to decide), so a sandbox costs one registry read per isolate. Unknown ids are
 * not kept: a bootstrap made in another isolate must be seen at once.
 */
export interface SandboxRegistry {
  isKnown(sandboxId: string): Promise<boolean>;
  /** Records an id this isolate has just bootstrapped. */
  remember(sandboxId: string): void;
}

/** Known ids kept per isolate; past this, lookups still work, they are just not kept. */
const KNOWN_SANDBOXES_MAX = 10_000;

export function createSandboxRegistry(lookup: (sandboxId: string) => Promise<boolean>, max = KNOWN_SANDBOXES_MAX): SandboxRegistry {
  const known = new Set<string>();
  const remember = (id: string) => {
    if (known.size < max) known.add(id);
  };
  return {
    async isKnown(id) {
      if (known.has(id)) return true;
      const yes = await lookup(id);
      if (yes) remember(id);
      return yes;
    },
    remember,
  };
}

/**
 * A position in the registry's listing order (newest first, then by id): opaque to clients, which
 * pass back the `next_cursor` of one page to get the next. base64url of `<created_at>.<id>`.
 */
export interface RegistryCursor {
  createdAt: number;
  id: string;
}

export function encodeCursor(c: RegistryCursor): string {
  return btoa(`${c.createdAt}.${c.id}`).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** The cursor, or undefined when the text is not one this registry made. */
export function decodeCursor(text: string, idPattern: RegExp): RegistryCursor | undefined {
  if (!/^[A-Za-z0-9_-]{1,200}$/.test(text)) return undefined;
  let raw: string;
  try {
    raw = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
  } catch {
    return undefined;
  }
  // An empty id: the position before every sandbox (a first page that held only the pinned one).
  const m = /^(\d{1,16})\.(.*)$/.exec(raw);
  if (!m || (m[2] !== '' && !idPattern.test(m[2]!))) return undefined;
  return { createdAt: Number(m[1]), id: m[2]! };
}

/** One page of the registry. `pinned` (the Worker's own sandbox) leads the first page when registered. */
export interface RegistryPage {
  ids: string[];
  /** Every sandbox ever bootstrapped. */
  total: number;
  next?: RegistryCursor;
}
