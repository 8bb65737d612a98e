/**
 * `npm run dev:rotate -- NAME`: rotate a secret of the running local stack as a deploy does
 * (scripts/local-stack/rotation.ts): a fresh random value for NAME in .dev.vars, then the stack
 * restarts its Worker. For a secret CREDENTIALS delivers at egress (STANDIN_PROVIDER_KEY) that is
 * all: the Worker reads it at each request, the provider revokes the old key right after, and one
 * completion through the chain proves the new one (the egress flow). For any other it also nudges
 * the agent and waits for the gateway to re-resolve (the push flow). With no NAME it applies
 * whatever was edited in .dev.vars by hand. The value is never printed and never passed on a
 * command line; the output names the flow, steps, times and key fingerprints.
 *
 * Exit codes: 0 rotated (or nothing changed); 1 the stack is not running, or the rotation failed;
 * 2 usage.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DEV_VARS_FILE } from '../src/admin-api.js';
import { readDevVars } from './local-stack/dev-vars.js';
import { CONTROL_SOCKET, requestRotation, writeFreshValue } from './local-stack/rotation.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DEV_VARS = `${ROOT}${DEV_VARS_FILE}`;
const SOCKET = `${ROOT}.dev-stack/${CONTROL_SOCKET}`;
/**
 * A Worker restart (seconds, at most 60), then the agent's refresh and the change hook (at most
 * 35 s), or one completion through the chain (an OpenClaw agent run: 10 to 25 s, at most 120).
 */
const ROTATION_TIMEOUT_MS = 200_000;
/**
 * What `dev:rotate NAME` may give a fresh random value: the Worker secrets of keys.example. Not
 * SIGNING_KEY_KEK: it wraps the stored signing keys and must be kept once set (keys.example);
 * vars (DEV_USER, CREDENTIALS, ...) are edited by hand and applied with a plain `dev:rotate`.
 */
const ROTATABLE = ['ADMIN_TOKEN', 'MOLTBOT_GATEWAY_TOKEN', 'STANDIN_PROVIDER_KEY'];
const USAGE = `usage: npm run dev:rotate [-- NAME]
  NAME (${ROTATABLE.join(', ')}): a fresh random value in .dev.vars, applied to the running stack
  (npm run dev) as a deploy would. Delivered at egress (STANDIN_PROVIDER_KEY): Worker restarted, old key
  revoked, one completion through the chain; no agent refresh. Otherwise: Worker restarted, agent
  refreshed, gateway re-resolved. No NAME: apply what was edited in .dev.vars by hand.`;

async function main(argv: string[]): Promise<number> {
  if (argv.length > 1 || argv[0] === '-h' || argv[0] === '--help') {
    (argv.length > 1 ? console.error : console.log)(USAGE);
    return argv.length > 1 ? 2 : 0;
  }
  const name = argv[0];
  if (name !== undefined && !ROTATABLE.includes(name)) {
    console.error(
      `dev:rotate: ${name.slice(0, 40)} is not one of ${ROTATABLE.join(', ')} (edit .dev.vars by hand and run npm run dev:rotate for others)`,
    );
    return 2;
  }
  if (!existsSync(SOCKET)) {
    console.error('dev:rotate: no local stack is running in this clone (start it with npm run dev)');
    return 1;
  }
  if (name !== undefined) {
    if (!(name in readDevVars(DEV_VARS))) {
      console.error(`dev:rotate: .dev.vars has no ${name}`);
      return 1;
    }
    writeFreshValue(DEV_VARS, name);
    console.log(`dev:rotate: wrote a new ${name} into .dev.vars`);
  }
  let report: Awaited<ReturnType<typeof requestRotation>>;
  try {
    report = await requestRotation(SOCKET, ROTATION_TIMEOUT_MS);
  } catch (e) {
    console.error(
      `dev:rotate: ${(e as NodeJS.ErrnoException).code === 'ECONNREFUSED' ? 'no local stack is running in this clone (start it with npm run dev)' : (e as Error).message}`,
    );
    return 1;
  }
  if (report.changed.length === 0) {
    console.log('dev:rotate: nothing changed in .dev.vars since the stack started or last rotated');
    return 0;
  }
  if (report.flow === 'egress')
    console.log(
      'dev:rotate: egress flow: delivered at egress, so the Worker alone applies it (restarted; no agent refresh, no change hook)',
    );
  if (report.flow === 'push')
    console.log(
      'dev:rotate: push flow: a value the sandbox holds, so the Worker restarted and the agent refreshed (and ran its change hook, if it has one)',
    );
  const t0 = report.events[0]?.at ?? Date.now();
  for (const e of report.events) console.log(`  +${String(e.at - t0).padStart(5)} ms  ${e.step}${e.detail ? ` (${e.detail})` : ''}`);
  const serves = report.events.find((e) => e.step === 'Worker serves the new value');
  const reloaded = report.events.find((e) => e.step.startsWith('gateway re-resolved'));
  const completed = report.events.find((e) => e.step.startsWith('first completion with the'));
  const stopped = report.events.find((e) => e.step === 'Worker stopped');
  if (serves && stopped) console.log(`dev:rotate: Worker restart ${serves.at - stopped.at} ms`);
  if (serves && reloaded)
    console.log(`dev:rotate: from the new Worker serving to the gateway using the new value: ${reloaded.at - serves.at} ms`);
  if (serves && completed)
    console.log(
      `dev:rotate: from the new Worker serving to the first completion accepted with the new value: ${completed.at - serves.at} ms`,
    );
  // The report's last line is machine-readable, for tests and scripts.
  console.log(JSON.stringify({ ok: report.ok, changed: report.changed, flow: report.flow, events: report.events, error: report.error }));
  if (!report.ok) {
    console.error(`dev:rotate: ${report.error}`);
    return 1;
  }
  return 0;
}

process.exit(await main(process.argv.slice(2)));
