/**
 * The change hook: a shell command run once per new credentials version, with CREDENTIALS_FILE
 * set, bounded by a timeout. Its output goes to the agent's own stdout/stderr (the operator's
 * command decides what it prints); the agent logs only whether it succeeded.
 */
/** Long enough to rewrite a config file and signal a process; short enough to notice a hang. */
export const HOOK_TIMEOUT_MS = 30_000;
/** After SIGTERM, how long a hook gets before SIGKILL. */
const HOOK_KILL_GRACE_MS = 2_000;

export interface HookResult {
  ok: boolean;
  /** Exit code, or the signal/timeout that ended it. */
  detail: string;
}

export async function runHook(command: string, credentialsFile: string, timeoutMs = HOOK_TIMEOUT_MS): Promise<HookResult> {
  // Loaded when a hook first runs: node:child_process brings dgram, net's pipes and some 15 of
  // Node's internal modules, which an agent without a hook would load at every start for nothing.
  const { spawn } = await import('node:child_process');
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', command], {
      env: { ...process.env, CREDENTIALS_FILE: credentialsFile },
      stdio: ['ignore', 'inherit', 'inherit'],
      detached: true, // its own process group, so a timeout ends the whole hook
    });
    let timedOut = false;
    const kill = (sig: NodeJS.Signals) => {
      try {
        process.kill(-child.pid!, sig);
      } catch {
        /* already gone */
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill('SIGTERM');
      setTimeout(() => kill('SIGKILL'), HOOK_KILL_GRACE_MS).unref();
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ ok: false, detail: `could not start: ${e.message}` });
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) resolve({ ok: false, detail: `timed out after ${timeoutMs} ms` });
      else if (code === 0) resolve({ ok: true, detail: 'exit 0' });
      else resolve({ ok: false, detail: code !== null ? `exit ${code}` : `signal ${signal}` });
    });
  });
}
