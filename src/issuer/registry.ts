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
export const KNOWN_SANDBOXES_MAX = 10_000;

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
