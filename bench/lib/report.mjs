// Turns loadgen reports into the summary, the printed table and the checks.

const LOADGEN_SATURATED_PCT = 90; // above this the load generator, not the server, may be the limit
const OTHERS_ON_SERVER_CORE_PCT = 3; // above this other processes took a visible share of the server's core

const mean = (xs) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);
const round = (x, d = 1) => (x == null ? null : Math.round(x * 10 ** d) / 10 ** d);
const sumCounts = (o) => Object.values(o ?? {}).reduce((a, b) => a + b, 0);

function lateReplay(r) {
  const late = r.replay?.late;
  return late ? { status: late.status, rejected: late.rejected, age_s: late.age_s } : null;
}

/** Means over the runs of one target (runs are closed-loop loadgen reports). */
export function summarize(reports) {
  return {
    runs: reports.length,
    tokens_per_s: reports.map((r) => r.ok_per_s),
    tokens_per_s_mean: round(mean(reports.map((r) => r.ok_per_s))),
    latency_ms_mean_of_runs: Object.fromEntries(['p50', 'p90', 'p99'].map((p) => [p, round(mean(reports.map((r) => r.latency_ms[p])), 2)])),
    non_2xx: reports.reduce((a, r) => a + sumCounts(r.non_2xx), 0),
    errors: reports.reduce((a, r) => a + sumCounts(r.errors), 0),
    warmup_errors: reports.reduce((a, r) => a + (r.warmup_errors ?? 0), 0),
    stalls_over_1s: reports.reduce((a, r) => a + (r.stalls?.count ?? 0), 0),
    max_ms: Math.max(...reports.map((r) => r.latency_ms.max ?? 0)),
    ok_malformed: reports.reduce((a, r) => a + r.ok_malformed, 0),
    server_cpu_pct_of_one_core: reports.map((r) => r.cpu_pct_of_one_core.server),
    other_processes_on_server_core_pct: reports.map((r) => r.other_processes_on_server_core_pct ?? null),
    loadgen_cpu_pct_of_one_core: reports.map((r) => r.cpu_pct_of_one_core.loadgen),
    replay_rejected: reports.every((r) => r.replay_rejected),
    late_replay: reports.map(lateReplay),
    tokens_verified: reports.reduce((a, r) => a + r.verification.verified, 0),
    tokens_verify_failed: reports.reduce((a, r) => a + r.verification.failed, 0),
  };
}

/** ours / peer: throughput (higher is better), p90 and p99 latency (lower is better). */
export function ratios(ours, peer) {
  if (!ours || !peer) return null;
  const latency = (p) => round(ours.latency_ms_mean_of_runs[p] / peer.latency_ms_mean_of_runs[p], 2);
  return { throughput: round(ours.tokens_per_s_mean / peer.tokens_per_s_mean, 2), p90: latency('p90'), p99: latency('p99') };
}

/** Problems with our endpoint's results: each one fails the bench. */
export function oursProblems(reports) {
  const problems = [];
  reports.forEach((r, i) => {
    const run = reports.length > 1 ? ` (run ${i + 1})` : '';
    const late = lateReplay(r);
    if (!late) problems.push(`late replay not checked${run}: no request was accepted`);
    else if (!late.rejected) problems.push(`late replay ACCEPTED (${late.status})${run}: ours must reject a reused jti`);
    if (!r.replay_rejected) problems.push(`immediate replay not rejected${run}: ${r.replay.first_status} then ${r.replay.second_status}`);
    if (sumCounts(r.non_2xx) || sumCounts(r.errors) || r.warmup_errors) {
      problems.push(
        `failed requests${run}: non-2xx ${JSON.stringify(r.non_2xx)}, errors ${JSON.stringify(r.errors)}, ` +
          `in the warm-up ${r.warmup_errors ?? 0}, first bodies ${JSON.stringify(r.error_samples)}`,
      );
    }
    if (r.ok_malformed) problems.push(`${r.ok_malformed} 2xx answers without access_token/token_type${run}`);
    if (r.verification.failed || !r.verification.verified) {
      problems.push(
        `token verification${run}: ${r.verification.verified} verified, ${r.verification.failed} failed (${r.verification.first_failure})`,
      );
    }
  });
  return problems;
}

/** Notes that qualify a figure (they do not fail the bench). */
export function caveats(label, reports) {
  const notes = [];
  for (const r of reports) {
    if (r.cpu_pct_of_one_core.loadgen >= LOADGEN_SATURATED_PCT) {
      notes.push(
        `${label}: load generator at ${r.cpu_pct_of_one_core.loadgen}% of its core, so ${r.ok_per_s} tokens/s may be its limit, not the server's`,
      );
    }
    const others = r.other_processes_on_server_core_pct;
    if (others > OTHERS_ON_SERVER_CORE_PCT) {
      notes.push(`${label}: other processes used ${others}% of the server's core during the run: the figure is low by about that much`);
    }
    const g = r.assertion_generation;
    if (g.underrun_waits) {
      notes.push(`${label}: ${g.underrun_waits} assertions were signed during the run (the pre-signed pool ran out: raise --max-rate)`);
    }
  }
  return [...new Set(notes)];
}

/**
 * The compact table: one row per run of each target. "others CPU%" is what other processes took
 * of the server's core during the run (see cpu.mjs).
 */
export function table(targets) {
  const head = [
    'target',
    'tokens/s',
    'p50 ms',
    'p90 ms',
    'p99 ms',
    'max ms',
    '>1 s',
    'non-2xx+err',
    'server CPU%',
    'others CPU%',
    'loadgen CPU%',
    'late replay',
    'tokens verified',
  ];
  const rows = [];
  for (const { label, reports, error } of targets) {
    if (error) {
      rows.push([label, ...head.slice(1).map(() => 'n/a')]); // the reason is printed under the table
      continue;
    }
    reports.forEach((r, i) => {
      const late = lateReplay(r);
      rows.push([
        reports.length > 1 ? `${label} #${i + 1}` : label,
        String(r.ok_per_s),
        ...['p50', 'p90', 'p99'].map((p) => r.latency_ms[p]?.toFixed(2) ?? '-'),
        String(Math.round(r.latency_ms.max ?? 0)),
        String(r.stalls?.count ?? '-'),
        String(sumCounts(r.non_2xx) + sumCounts(r.errors) + (r.warmup_errors ?? 0)),
        String(r.cpu_pct_of_one_core.server ?? '-'),
        String(r.other_processes_on_server_core_pct ?? '-'),
        String(r.cpu_pct_of_one_core.loadgen),
        late ? `${late.rejected ? 'rejected' : 'ACCEPTED'} (${late.status})` : '-',
        `${r.verification.verified}/${r.verification.sampled}`,
      ]);
    });
  }
  const width = head.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? '').length)));
  const line = (cells) =>
    cells
      .map((x, c) => (c === 0 ? x.padEnd(width[c]) : x.padStart(width[c])))
      .join('  ')
      .trimEnd();
  return [line(head), line(width.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}
