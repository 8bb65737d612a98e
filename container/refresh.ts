#!/usr/bin/env node
/**
 * The container agent (docs/architecture.md, "Container agent" and "Refresh"): authenticates with the bootstrap key,
 * keeps `token`, `credentials.json` and `state.json` fresh in --dir without restarts, runs the
 * change hook on a new credentials version, and serves /healthz, /metrics and POST /refresh.
 *
 * Exit codes: 0 done (--once) or stopped by a signal; 1 no credential (--once: issuer unreachable,
 * key or clock refused, bad answer, a file it cannot write); 2 usage, bootstrap file, output
 * directory or port problem; 3 the change hook failed (--once). A failed refresh never ends the
 * long-running agent: start.sh would take the gateway down with it.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { CREDENTIALS_FILE } from '../src/admin-api.js';
import { AgentError, parseBootstrapFile, prepareKeys, tokenEndpoint } from './agent/client.js';
import { type AgentConfig, parseAgentConfig, USAGE, UsageError } from './agent/config.js';
import { describeErrno } from './agent/errors.js';
import { prepareDir, readBack, STATE_FILE, TOKEN_FILE, writeAtomic } from './agent/files.js';
import { runHook } from './agent/hook.js';
import { nodePost } from './agent/http-client.js';
import { createLogger } from './agent/log.js';
import { Refresher } from './agent/refresher.js';
import { startServer } from './agent/server.js';
import { startupTiming } from './agent/timing.js';

// First: the moment the agent's code is loaded and running (AGENT_TIMING=1; timing.ts).
const timing = startupTiming(process.env);
timing.mark('loaded');

function die(code: number, message: string): never {
  process.stderr.write(`refresh: ${message}\n`);
  process.exit(code);
}

async function sleep(ms: number, signal: AbortSignal): Promise<void> {
  await delay(ms, undefined, { signal }).catch(() => undefined);
}

async function main(cfg: AgentConfig): Promise<void> {
  const log = createLogger();
  let text: string;
  try {
    text = await readFile(cfg.bootstrapKeyFile, 'utf8');
  } catch (e) {
    die(2, `error: cannot read bootstrap file ${cfg.bootstrapKeyFile} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  let file: ReturnType<typeof parseBootstrapFile>;
  let keys: Awaited<ReturnType<typeof prepareKeys>>;
  try {
    file = parseBootstrapFile(text, cfg.bootstrapKeyFile);
    timing.mark('bootstrap_read');
    keys = await prepareKeys(file);
  } catch (e) {
    if (e instanceof AgentError) die(2, `error: ${e.message}`);
    throw e;
  }
  timing.mark('keys_ready');
  try {
    await prepareDir(cfg.dir);
  } catch (e) {
    die(2, `error: cannot prepare the output directory ${cfg.dir} (${describeErrno(e)})`);
  }
  const credentialsPath = join(cfg.dir, CREDENTIALS_FILE);
  const r = new Refresher(
    { file, endpoint: tokenEndpoint(file, cfg.issuerOverride), keys, maxBackoffMs: cfg.maxBackoffMs },
    {
      now: Date.now,
      random: Math.random,
      sleep,
      post: timing.around(nodePost, 'request_sent', 'answer_read'),
      log,
      store: {
        // The first call of any of them starts the writes (credentials first, when there are any).
        writeToken: timing.around((t) => writeAtomic(cfg.dir, TOKEN_FILE, `${t}\n`), 'writes_started', 'token_written'),
        writeCredentials: timing.around(
          (c) => writeAtomic(cfg.dir, CREDENTIALS_FILE, `${JSON.stringify(c, null, 2)}\n`),
          'writes_started',
          'credentials_written',
        ),
        writeState: timing.around(
          (s) => writeAtomic(cfg.dir, STATE_FILE, `${JSON.stringify(s, null, 2)}\n`),
          'writes_started',
          'state_written',
        ),
      },
      hook: cfg.onChange ? () => runHook(cfg.onChange!, credentialsPath, cfg.hookTimeoutMs) : undefined,
    },
  );
  r.restore(await readBack(cfg.dir));
  timing.mark('dir_ready');

  if (cfg.once) {
    let out = await r.refresh('once');
    // Refused for the assertion's times, with the issuer's clock now measured (its Date header):
    // one more try, on the issuer's time. start.sh would otherwise start a new process, which
    // would know nothing of the measurement, every 2 s forever.
    if (!out.ok && out.error.code === 'clock_skew' && r.clock.correcting()) out = await r.refresh("once, on the issuer's time");
    if (!out.ok) die(1, `error: ${out.error.message}`);
    await r.hookSettled();
    if (r.metrics.hooks.error > 0) die(3, 'error: the change hook failed (see the log line above)');
    timing.mark('done');
    timing.report(log);
    process.exit(0);
  }

  let server: Awaited<ReturnType<typeof startServer>>;
  try {
    server = await startServer(r, { host: cfg.host, port: cfg.port });
  } catch (e) {
    die(2, `error: cannot listen on ${cfg.host}:${cfg.port} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const addr = server.address();
  log('info', 'agent_started', {
    client_id: file.client_id,
    endpoint: tokenEndpoint(file, cfg.issuerOverride),
    dir: cfg.dir,
    port: typeof addr === 'object' && addr ? addr.port : cfg.port,
    token_valid: r.healthy(),
  });
  const stop = new AbortController();
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      log('info', 'agent_stopping', { signal: sig });
      stop.abort();
      server.close();
    });
  }
  await r.run(stop.signal);
  await r.hookSettled();
}

if (process.argv.includes('--help') || process.argv.includes('-h')) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
let cfg: AgentConfig;
try {
  cfg = parseAgentConfig(process.argv.slice(2), process.env);
} catch (e) {
  if (e instanceof UsageError) die(2, e.message);
  throw e;
}
main(cfg).catch((e: unknown) => die(1, `error: ${(e as Error).message ?? String(e)}`));
