// The Worker of bench:chain's second chain: the bundle `wrangler deploy` would upload (built in the
// stack's copy with wrangler's dry run, as bench:token builds it) under plain `workerd serve`, with
// nothing of wrangler dev's local machinery in front of it (no Node proxy, no second workerd). Its
// bindings are the local stack's Worker's: the vars of wrangler.toml with fresh secrets (as
// bench:token's), then what scripts/dev.ts passes wrangler dev with --var: ISSUER = its own origin,
// DEV_USER, GATEWAY_UPSTREAM = a verifying proxy's URL; and the stack's SANDBOX_ID. Its gateway
// route then does what the stack's Worker does: mints a user token for DEV_USER and forwards HTTP
// and WebSocket upgrades with fetch() to that proxy.
import path from 'node:path';
import { buildBundle, startWorkerd, workerBindings, writeConfig } from './workerd.mjs';

/** The bundle's folder under the Worker's working folder (writeConfig embeds it from there). */
const BUNDLE_DIR = 'bundle';
/**
 * Where the Worker's fetch() may go: workerd's default (public addresses) and loopback, where the
 * proxy is. Without "local", workerd refuses the forward as it would an SSRF attempt.
 */
const OUTBOUND = ['public', 'local'];
/** writeConfig's socket listens here; it is the stack's LOCAL_HOST too. */
const WORKERD_HOST = '127.0.0.1';

/** Builds the bundle of the tree in `dir` into `<workDir>/bundle`; resolves to wrangler's exit code. */
export function buildWorkerBundle(dir, workDir, logFile) {
  return buildBundle(dir, path.join(workDir, BUNDLE_DIR), logFile);
}

/**
 * Serves the bundle built into `workDir` on `host:port`, not pinned (nothing else of the chain is),
 * its Durable Objects' SQLite files under `workDir`; resolves once its JWKS answers 200.
 */
export async function startChainWorker({ dir, workDir, host, port, sandbox, user, upstream, logFile }) {
  if (host !== WORKERD_HOST) throw new Error(`the workerd Worker listens on ${WORKERD_HOST}, not ${host}`);
  const origin = `http://${host}:${port}`;
  const bindings = { ...(await workerBindings(dir, origin)), SANDBOX_ID: sandbox, DEV_USER: user, GATEWAY_UPSTREAM: upstream };
  const configFile = await writeConfig({
    dir: workDir,
    bundleName: BUNDLE_DIR,
    port,
    bindings,
    storageDir: path.join(workDir, 'do-storage'),
    allowOutbound: OUTBOUND,
  });
  const child = await startWorkerd({ projectRoot: dir, dir: workDir, configFile, origin, logFile, cpu: null });
  return { origin, child };
}
