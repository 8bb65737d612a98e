/**
 * The agent's flags, each with an environment twin (docs/architecture.md, "Container environment and flags"), parsed once into AgentConfig.
 * A bad or missing value is one clear line naming the flag.
 */
import { CONTAINER_PORTS } from '../../src/admin-api.js';
import { httpUrl, readFlags, UsageError } from '../lib/flags.js';
import { HOOK_TIMEOUT_MS } from './hook.js';
import { BACKOFF_MAX_MS } from './schedule.js';

export interface AgentConfig {
  bootstrapKeyFile: string;
  issuerOverride?: string;
  dir: string;
  onChange?: string;
  host: string;
  port: number;
  once: boolean;
  hookTimeoutMs: number;
  maxBackoffMs: number;
}

export { UsageError };

/** The container's agent port: start.sh's AGENT_PORT and the Worker's push reach it there. */
const DEFAULT_PORT = CONTAINER_PORTS.agent;

export const USAGE = `usage: refresh --bootstrap-key FILE --dir DIR [options]
  --bootstrap-key FILE   bootstrap file from the issuer            (BOOTSTRAP_KEY_FILE)
  --dir DIR              output directory for token, credentials    (CREDENTIALS_DIR)
  --issuer URL           token endpoint origin override             (ISSUER_URL)
  --on-change CMD        run on a new credentials version           (ON_CHANGE)
  --port N               health/metrics/nudge port, default ${DEFAULT_PORT}    (AGENT_PORT)
  --host ADDR            listen address, default 127.0.0.1          (AGENT_HOST)
  --hook-timeout DUR     change hook timeout, default 30s           (HOOK_TIMEOUT)
  --max-backoff DUR      longest wait between retries, default 5m   (MAX_BACKOFF)
  --once                 get one credential, write it, run the hook, exit`;

function duration(flag: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined || raw === '') return fallback;
  const m = /^(\d+)(ms|s|m)?$/.exec(raw.trim());
  if (!m) throw new UsageError(`${flag}: must be a duration such as 500ms, 30s or 5m`);
  const n = Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 'm' ? 60_000 : 1_000);
  if (n <= 0) throw new UsageError(`${flag}: must be greater than zero`);
  return n;
}

export function parseAgentConfig(argv: string[], env: NodeJS.ProcessEnv): AgentConfig {
  const flags = readFlags(
    argv,
    env,
    {
      'bootstrap-key': { type: 'string' },
      issuer: { type: 'string' },
      dir: { type: 'string' },
      'on-change': { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      'hook-timeout': { type: 'string' },
      'max-backoff': { type: 'string' },
      once: { type: 'boolean' },
    },
    USAGE,
  );
  const { pick, values } = flags;
  const bootstrapKeyFile = flags.required('bootstrap-key', 'BOOTSTRAP_KEY_FILE');
  const dir = flags.required('dir', 'CREDENTIALS_DIR');
  const issuerOverride = pick('issuer', 'ISSUER_URL');
  if (issuerOverride !== undefined) httpUrl('--issuer', issuerOverride, 'http://issuer.internal');
  const port = flags.port('port', 'AGENT_PORT', DEFAULT_PORT);
  const envOnce = env.ONCE === '1' || env.ONCE === 'true';
  return {
    bootstrapKeyFile,
    dir,
    issuerOverride,
    onChange: pick('on-change', 'ON_CHANGE'),
    host: pick('host', 'AGENT_HOST') ?? '127.0.0.1',
    port,
    once: values.once === true || envOnce,
    hookTimeoutMs: duration('--hook-timeout', pick('hook-timeout', 'HOOK_TIMEOUT'), HOOK_TIMEOUT_MS),
    maxBackoffMs: duration('--max-backoff', pick('max-backoff', 'MAX_BACKOFF'), BACKOFF_MAX_MS),
  };
}
