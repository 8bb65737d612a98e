/**
 * Opt-in startup timing of a `--once` run (start.sh's first step): AGENT_TIMING=1 in the
 * environment, not a flag, so that it reaches the agent through start.sh unchanged. Where the time
 * to the first credential goes, for bench/first-credential.mjs.
 *
 * Each mark is taken when it first happens (later ones are ignored, so the marks are the first
 * credential's) and logged as ms since this process started (performance.timeOrigin), in one
 * `startup_timing` line just before the process exits: numbers only, never a token, a key or a
 * credential value. Unset, every call is a no-op and `around` returns its function unchanged.
 *
 * Marks read process.hrtime, the monotonic clock performance.now() counts on, and are converted
 * only in report(): the first use of `performance` (or node:perf_hooks) loads about ten of Node's
 * internal modules, which would add to the very start it measures.
 */
import type { Performance } from 'node:perf_hooks';
import type { Fields, Logger } from './log.js';

/**
 * In the order a `--once` run reaches them; the line's other fields are STARTUP_TIMING_FIELDS.
 * @public bench/first-credential.mjs and the startup test read the names from here.
 */
export const MARKS = [
  /** The agent's code is loaded and evaluated: its first statement runs. */
  'loaded',
  'bootstrap_read',
  /** The bootstrap key imported and the X25519 key made (prepareKeys). */
  'keys_ready',
  /** The output directory prepared and what a previous run left read back. */
  'dir_ready',
  /** The token request handed to the HTTP client (the assertion is signed by then)... */
  'request_sent',
  /** ...and its whole answer read. */
  'answer_read',
  /** The answer checked and the credentials decrypted: the first file write begins. */
  'writes_started',
  'credentials_written',
  'token_written',
  'state_written',
  /** The change hook settled; process.exit follows. */
  'done',
] as const;
type TimingMark = (typeof MARKS)[number];

/**
 * Every field of the `startup_timing` line, in the order of the time they stand for: the process's
 * start (epoch ms), the CPU time used, Node's own start, then the marks.
 * @public bench/first-credential.mjs reads them from here.
 */
export const STARTUP_TIMING_FIELDS = ['time_origin', 'cpu', 'node_ready', ...MARKS] as const;

export interface StartupTiming {
  mark(name: TimingMark): void;
  /** `fn`, marking `before` when it is called and `after` when it resolves. */
  around<A extends unknown[], R>(
    fn: (...args: A) => Promise<R>,
    before: TimingMark | undefined,
    after: TimingMark,
  ): (...args: A) => Promise<R>;
  /** The `startup_timing` line: each mark in ms since process start, that start as epoch ms, and the CPU time used. */
  report(log: Logger): void;
}

const OFF: StartupTiming = { mark: () => undefined, around: (fn) => fn, report: () => undefined };

/** Marks to a tenth of a millisecond: finer is noise for a process start. */
const round = (ms: number) => Math.round(ms * 10) / 10;

/** ms on the clock performance.now() reads, from a different origin. */
const monotonicMs = () => Number(process.hrtime.bigint()) / 1e6;

export function startupTiming(env: NodeJS.ProcessEnv): StartupTiming {
  if (env.AGENT_TIMING !== '1') return OFF;
  const at = new Map<TimingMark, number>();
  const mark = (name: TimingMark) => {
    if (!at.has(name)) at.set(name, monotonicMs());
  };
  return {
    mark,
    around:
      (fn, before, after) =>
      async (...args) => {
        if (before) mark(before);
        const r = await fn(...args);
        mark(after);
        return r;
      },
    report: (log) => {
      // Before `performance` is first touched (see above).
      const cpu = process.cpuUsage();
      // Node's own, with nodeTiming (the DOM typing of the global lacks it).
      const perf = performance as unknown as Performance;
      const startMonotonic = monotonicMs() - perf.now();
      const fields: Fields = {
        // The epoch (ms) the marks count from; another process's clock lines up with it.
        time_origin: round(perf.timeOrigin),
        // Node's own start, before it loads the agent's code (the same in any `node` start).
        node_ready: round(perf.nodeTiming.bootstrapComplete),
        // CPU time (user + system, every thread) used so far: what the marks cost apart from
        // waiting, for a machine where other work takes turns with this process.
        cpu: round((cpu.user + cpu.system) / 1000),
      };
      for (const name of MARKS) fields[name] = at.has(name) ? round(at.get(name)! - startMonotonic) : undefined;
      log('info', 'startup_timing', fields);
    },
  };
}
