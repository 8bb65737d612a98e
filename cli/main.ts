/**
 * credctl, the operator CLI of the credential issuer: the process's entry. Wires argv, the
 * environment, stdio and the exit code to dispatch.run; `credctl --help` lists the commands and
 * the exit codes. Built into dist/cli/credctl.mjs (npm run build:cli) and run by bin/credctl.mjs;
 * `npm run cli -- <args>` runs it from source.
 */

import { run } from './dispatch.js';
import { EXIT, usageError } from './errors.js';

/** A token on stdin is a few KiB; anything far beyond is not a token. */
const STDIN_MAX_BYTES = 64 * 1024;

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    size += b.length;
    if (size > STDIN_MAX_BYTES) throw usageError(`stdin holds more than ${STDIN_MAX_BYTES / 1024} KiB: not a token`);
    chunks.push(b);
  }
  return Buffer.concat(chunks).toString('utf8');
}

// `credctl audit | head`: a closed pipe ends the run quietly, not with a stack trace.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  process.exit(e.code === 'EPIPE' ? (process.exitCode ?? EXIT.ok) : EXIT.issuer);
});

// The last guard for "no stack traces": anything that escaped run() is one line.
process.on('uncaughtException', (e) => {
  process.stderr.write(`credctl: unexpected error (${e.name})\n`);
  process.exit(EXIT.issuer);
});

process.exitCode = await run(
  process.argv.slice(2),
  {
    out: (line) => void process.stdout.write(`${line}\n`),
    err: (line) => void process.stderr.write(`${line}\n`),
    isTTY: process.stdout.isTTY === true,
    readStdin,
    now: Date.now,
    cwd: process.cwd(),
  },
  process.env,
);
