// Closed-loop latency: one request in flight, targets interleaved in rounds so that whatever else
// the machine does meanwhile falls on every target alike; then percentiles, differences and the
// printed tables of bench/chain.mjs.

const PERCENTILES = [50, 90, 99];
/** Samples are kept in the results file to the microsecond: finer is timer noise. */
const SAMPLE_DECIMALS = 3;

const round = (x, d = 3) => (x == null ? null : Math.round(x * 10 ** d) / 10 ** d);

/** Nearest-rank percentile of sorted `xs` (the value at or below which p% of the samples are). */
function percentile(sorted, p) {
  return sorted.length ? sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)] : null;
}

/** count, p50, p90, p99, max and mean (ms) of one target's samples. */
export function stats(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  const out = { count: sorted.length };
  for (const p of PERCENTILES) out[`p${p}`] = round(percentile(sorted, p));
  out.max = round(sorted.at(-1) ?? null);
  out.mean = sorted.length ? round(sorted.reduce((a, b) => a + b, 0) / sorted.length) : null;
  return out;
}

/**
 * Runs `perTarget` requests of each target, `roundSize` at a time per target, the targets taking
 * turns (and the first place moving each round, so none always follows the same one). Each
 * target's `once()` sends one request and resolves when its answer is complete; it throws on a
 * failed one. With `record` false (warm-up) nothing is kept.
 */
export async function interleaved(targets, { perTarget, roundSize, record, stopped }) {
  const done = new Map(targets.map((t) => [t, 0]));
  for (let r = 0; [...done.values()].some((n) => n < perTarget); r++) {
    const order = targets.map((_t, i) => targets[(i + r) % targets.length]);
    for (const t of order) {
      const n = Math.min(roundSize, perTarget - done.get(t));
      for (let i = 0; i < n; i++) {
        if (stopped()) return;
        await timedOnce(t, record);
      }
      done.set(t, done.get(t) + n);
    }
  }
}

async function timedOnce(t, record) {
  const start = performance.now();
  try {
    await t.once();
    if (record) t.samples.push(round(performance.now() - start, SAMPLE_DECIMALS));
  } catch (e) {
    if (!record) throw new Error(`${t.label}: ${e.message} (in the warm-up)`);
    t.failed++;
    t.firstError ??= e.message;
  }
}

/** `a - b` of two stats at each percentile, and `a / b`. */
export function difference(a, b) {
  const out = {};
  for (const k of ['p50', 'p99']) {
    out[`${k}_ms`] = a[k] == null || b[k] == null ? null : round(a[k] - b[k]);
    out[`${k}_ratio`] = a[k] == null || !b[k] ? null : round(a[k] / b[k], 2);
  }
  return out;
}

/** Plain text table: the first column left-aligned, the others right-aligned. */
export function textTable(head, rows) {
  const width = head.map((h, c) => Math.max(h.length, ...rows.map((r) => String(r[c] ?? '').length)));
  const line = (cells) =>
    cells
      .map((x, c) => (c === 0 ? String(x ?? '').padEnd(width[c]) : String(x ?? '').padStart(width[c])))
      .join('  ')
      .trimEnd();
  return [line(head), line(width.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/** A figure in ms for the tables: three decimals below 10 ms, fewer above (the noise is larger). */
export function ms(x) {
  if (x == null) return '-';
  const a = Math.abs(x);
  return x.toFixed(a < 10 ? 3 : a < 100 ? 2 : 1);
}
