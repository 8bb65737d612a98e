/**
 * The agent's HTTP endpoint (loopback by default): GET /healthz, GET /metrics (Prometheus text),
 * POST /refresh (refresh now, at most once a second).
 */
import { createServer, type Server } from 'node:http';
import type { AgentErrorCode } from './errors.js';
import type { Refresher } from './refresher.js';

/** POST /refresh at most this often: a nudge is for "pick up a rotated secret now", not for polling. */
const NUDGE_INTERVAL_MS = 1_000;

/**
 * POST /refresh's status for a failed refresh: 502 when the issuer is the problem (unreachable,
 * refused, a bad answer), 503 when the agent itself cannot complete it now (a file it cannot write).
 */
function failureStatus(code: AgentErrorCode): number {
  return code === 'write_failed' || code === 'internal_error' ? 503 : 502;
}

function metricsText(r: Refresher): string {
  const left = r.expiresInMs();
  const exp = left !== undefined ? left / 1000 : -1;
  const lines = [
    '# HELP credential_agent_token_expiry_seconds Seconds until the current token expires (negative: expired or none).',
    '# TYPE credential_agent_token_expiry_seconds gauge',
    `credential_agent_token_expiry_seconds ${exp.toFixed(3)}`,
    '# HELP credential_agent_refreshes_total Token refreshes by result.',
    '# TYPE credential_agent_refreshes_total counter',
    ...(['ok', 'error', 'refused'] as const).map((k) => `credential_agent_refreshes_total{result="${k}"} ${r.metrics.refreshes[k]}`),
    '# HELP credential_agent_refresh_failures_total Failed refreshes by error code (e.g. credentials_undecryptable, write_failed).',
    '# TYPE credential_agent_refresh_failures_total counter',
    ...Object.entries(r.metrics.failures).map(([code, n]) => `credential_agent_refresh_failures_total{code="${code}"} ${n}`),
    '# HELP credential_agent_consecutive_failures Failed refreshes since the last success.',
    '# TYPE credential_agent_consecutive_failures gauge',
    `credential_agent_consecutive_failures ${r.failures}`,
    '# HELP credential_agent_hook_runs_total Change hook runs by result.',
    '# TYPE credential_agent_hook_runs_total counter',
    ...(['ok', 'error'] as const).map((k) => `credential_agent_hook_runs_total{result="${k}"} ${r.metrics.hooks[k]}`),
    '# HELP credential_agent_credentials_info The credentials version on disk.',
    '# TYPE credential_agent_credentials_info gauge',
  ];
  if (r.credentials) lines.push(`credential_agent_credentials_info{version="${r.credentials.version.replace(/[^A-Za-z0-9_-]/g, '')}"} 1`);
  return `${lines.join('\n')}\n`;
}

export function startServer(r: Refresher, opts: { host: string; port: number; now?: () => number }): Promise<Server> {
  const now = opts.now ?? Date.now;
  let lastNudge = Number.NEGATIVE_INFINITY;
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const send = (status: number, body: string, type = 'application/json', extra: Record<string, string> = {}) => {
      res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store', ...extra });
      res.end(body);
    };
    if (path === '/healthz' && req.method === 'GET') {
      const status = r.healthStatus();
      const left = r.expiresInMs();
      return send(
        status === 'ok' ? 200 : 503,
        JSON.stringify({
          status,
          expires_in: left === undefined ? null : Math.floor(left / 1000),
          kid: r.current?.kid ?? null,
          credentials_version: r.credentials?.version ?? null,
          consecutive_failures: r.failures,
          clock_skew_s: r.clock.agentAheadS() ?? null,
        }),
      );
    }
    if (path === '/metrics' && req.method === 'GET') return send(200, metricsText(r), 'text/plain; version=0.0.4');
    if (path === '/refresh' && req.method === 'POST') {
      const t = now();
      if (t - lastNudge < NUDGE_INTERVAL_MS)
        return send(429, JSON.stringify({ error: 'too_many_requests', retry_after: 1 }), 'application/json', { 'Retry-After': '1' });
      lastNudge = t;
      void r.refresh('nudge').then(
        (out) => {
          if (out.ok)
            send(200, JSON.stringify({ refreshed: true, kid: out.token.kid ?? null, credentials_version: r.credentials?.version ?? null }));
          else
            send(
              failureStatus(out.error.code),
              JSON.stringify({ refreshed: false, error: out.error.code, message: out.error.message, path: out.error.path }),
            );
        },
        () => send(503, JSON.stringify({ refreshed: false, error: 'internal_error' })),
      );
      return;
    }
    if (['/healthz', '/metrics', '/refresh'].includes(path)) return send(405, JSON.stringify({ error: 'method_not_allowed' }));
    return send(404, JSON.stringify({ error: 'not_found' }));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}
