// Our side: build the Worker bundle with wrangler's dry run and serve it with `workerd serve`
// and a generated capnp config (SQLite-backed Durable Objects on a temporary disk directory).
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { onCpu, run, spawnTracked, stop } from './processes.mjs';

const COMPATIBILITY_DATE = '2026-04-26'; // workerd 1.20260426.1 (see wrangler.toml)
const COMPATIBILITY_FLAGS = ['nodejs_compat'];
const DURABLE_OBJECTS = [
  { binding: 'KEY_AUTHORITY', className: 'KeyAuthority' },
  { binding: 'SANDBOX_AUTHORITY', className: 'SandboxAuthority' },
];
const READY_TIMEOUT_MS = 20_000;
const READY_POLL_MS = 100;

/**
 * The vars of wrangler.toml (read with wrangler's own config reader, so vars added later come
 * along), then the bench's values for a local issuer at `origin`, then fresh random secrets.
 * Strings become text bindings, anything else a JSON binding.
 */
export async function workerBindings(projectRoot, origin) {
  let fromToml = {};
  // Loading wrangler installs SIGINT/SIGTERM/SIGHUP listeners that call process.exit() at once,
  // which would cut a bench's own cleanup short on Ctrl-C: the ones it adds are removed again.
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  const before = new Map(signals.map((s) => [s, process.listeners(s)]));
  try {
    process.env.WRANGLER_SEND_METRICS = 'false';
    const entry = createRequire(path.join(projectRoot, 'package.json')).resolve('wrangler');
    const { unstable_readConfig: readConfig } = await import(pathToFileURL(entry).href);
    fromToml = readConfig({ config: path.join(projectRoot, 'wrangler.toml') }).vars ?? {};
  } catch (e) {
    console.error(`[bench] could not read the vars of wrangler.toml (${e.message}); using the bench's own`);
  } finally {
    for (const s of signals) for (const l of process.listeners(s)) if (!before.get(s).includes(l)) process.off(s, l);
  }
  const secret = () => randomBytes(36).toString('base64url'); // 48 characters
  return {
    ...fromToml,
    ISSUER: origin,
    ACCESS_TOKEN_TTL: '300s',
    AGENT_TOKEN_TTL: '600s',
    JWKS_MAX_AGE: '300s',
    CLOCK_SKEW: '30s',
    ROTATION_PERIOD: '24h',
    CF_ACCESS_TEAM_DOMAIN: '',
    CF_ACCESS_AUD: '',
    CREDENTIALS: JSON.stringify({ GATEWAY_TOKEN: { secret: 'MOLTBOT_GATEWAY_TOKEN', derive: true } }),
    ADMIN_TOKEN: secret(),
    SIGNING_KEY_KEK: secret(),
    MOLTBOT_GATEWAY_TOKEN: secret(),
  };
}

/** `wrangler deploy --dry-run --outdir <outdir>`; its output goes to `logFile`. */
export async function buildBundle(projectRoot, outdir, logFile) {
  const fd = openSync(logFile, 'w');
  try {
    const code = await run(path.join(projectRoot, 'node_modules', '.bin', 'wrangler'), ['deploy', '--dry-run', '--outdir', outdir], {
      cwd: projectRoot,
      stdio: ['ignore', fd, fd],
      env: { ...process.env, WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false' },
    });
    // A dry run with a container image also tries to build the image (and fails without Docker)
    // after the bundle is written, so the bundle, not the exit code, decides.
    if (!existsSync(path.join(outdir, 'index.js'))) {
      throw new Error(`wrangler dry run wrote no index.js (exit ${code}):\n${await tail(logFile)}`);
    }
    return code;
  } finally {
    closeSync(fd);
  }
}

/** The modules of a bundle directory, main module (index.js) first. */
async function bundleModules(bundleDir) {
  const files = (await readdir(bundleDir, { recursive: true })).map((f) => f.split(path.sep).join('/'));
  const kinds = { '.js': 'esModule', '.mjs': 'esModule', '.wasm': 'wasm', '.bin': 'data', '.txt': 'text', '.html': 'text' };
  const modules = files
    .filter((f) => kinds[path.extname(f)] && !f.endsWith('.map'))
    .map((name) => ({ name, kind: kinds[path.extname(name)] }));
  const main = modules.findIndex((m) => m.name === 'index.js');
  if (main < 0) throw new Error(`no index.js in ${bundleDir}`);
  modules.unshift(...modules.splice(main, 1));
  return modules;
}

// Cap'n Proto text literals take C escapes (\" \\), not JSON's \uXXXX: keep to printable ASCII.
function capnpText(s) {
  if (!/^[\x20-\x7e]*$/.test(s)) throw new Error(`not printable ASCII, cannot go into the capnp config: ${s}`);
  return `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/**
 * Writes `<dir>/workerd.capnp` serving the bundle in `<dir>/<bundleName>` on 127.0.0.1:port.
 * `allowOutbound` (optional): the address blocks the Worker's fetch() may reach, as workerd's
 * Network.allow list (e.g. ['public', 'local'] for a Worker that forwards to a server on loopback);
 * without it, workerd's implicit "internet" service: public addresses only.
 */
export async function writeConfig({ dir, bundleName, port, bindings, storageDir, allowOutbound }) {
  const modules = await bundleModules(path.join(dir, bundleName));
  await mkdir(storageDir, { recursive: true });
  const config = `# Generated by bench/token.mjs for one bench run.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "issuer", worker = .issuer),
    (name = "do-storage", disk = (path = ${capnpText(storageDir)}, writable = true)),${
      allowOutbound ? `\n    (name = "internet", network = (allow = [${allowOutbound.map(capnpText).join(', ')}])),` : ''
    }
  ],
  sockets = [(name = "http", address = ${capnpText(`127.0.0.1:${port}`)}, http = (), service = "issuer")],
);

const issuer :Workerd.Worker = (
  modules = [
${modules.map((m) => `    (name = ${capnpText(m.name)}, ${m.kind} = embed ${capnpText(`${bundleName}/${m.name}`)}),`).join('\n')}
  ],
  compatibilityDate = ${capnpText(COMPATIBILITY_DATE)},
  compatibilityFlags = [${COMPATIBILITY_FLAGS.map(capnpText).join(', ')}],
  bindings = [
${Object.entries(bindings)
  .map(([k, v]) =>
    typeof v === 'string'
      ? `    (name = ${capnpText(k)}, text = ${capnpText(v)}),`
      : `    (name = ${capnpText(k)}, json = ${capnpText(JSON.stringify(v))}),`,
  )
  .join('\n')}
${DURABLE_OBJECTS.map((d) => `    (name = ${capnpText(d.binding)}, durableObjectNamespace = ${capnpText(d.className)}),`).join('\n')}
  ],
  durableObjectNamespaces = [
${DURABLE_OBJECTS.map((d) => `    (className = ${capnpText(d.className)}, uniqueKey = ${capnpText(`bench-${d.className}`)}, enableSql = true),`).join('\n')}
  ],
  durableObjectStorage = (localDisk = "do-storage"),
);
`;
  const file = path.join(dir, 'workerd.capnp');
  await writeFile(file, config, { mode: 0o600 }); // holds the secrets
  return file;
}

/** The workerd binary itself (not a wrapper), so that its PID is the server's for CPU accounting. */
function workerdBinary(projectRoot) {
  try {
    const bin = createRequire(path.join(projectRoot, 'package.json'))('workerd').default;
    if (bin && existsSync(bin)) return bin;
  } catch {}
  return path.join(projectRoot, 'node_modules', '.bin', 'workerd');
}

/**
 * Starts `workerd serve` on CPU 0 (or `cpu`; null: not pinned) with stdout/stderr to `logFile`
 * (the Worker logs a JSON line per event: on a terminal that would cost the server CPU), and waits
 * until the JWKS answers 200.
 */
export async function startWorkerd({ projectRoot, dir, configFile, origin, logFile, cpu = 0 }) {
  const fd = openSync(logFile, 'w');
  // --verbose adds workerd's own errors (not one line per request) to the log.
  const command = [workerdBinary(projectRoot), ['serve', '--verbose', configFile]];
  const child = spawnTracked(...(cpu === null ? command : onCpu(cpu, ...command)), {
    cwd: dir,
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let exited = null;
  child.exited.then((e) => {
    exited = e;
  });
  try {
    for (;;) {
      if (exited) throw new Error(`workerd exited at start (${JSON.stringify(exited)}):\n${await tail(logFile)}`);
      try {
        const r = await fetch(`${origin}/.well-known/jwks.json`);
        await r.arrayBuffer();
        if (r.status === 200) return child;
      } catch {}
      if (Date.now() > deadline) throw new Error(`JWKS not 200 within ${READY_TIMEOUT_MS} ms:\n${await tail(logFile)}`);
      await new Promise((resolve) => setTimeout(resolve, READY_POLL_MS));
    }
  } catch (e) {
    await stop(child);
    throw e;
  }
}

export async function tail(file, lines = 20) {
  try {
    return (await readFile(file, 'utf8')).trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}
