/**
 * The configuration is documented exactly: the README's table, wrangler.toml's [vars] and
 * keys.example list the options the config schema knows, no more and no fewer.
 */
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { ROOT } from './worker-process.js';

// By path: src/config.ts is typed against the Workers types, which this project does not load.
const loadOptions = async () => ((await import(/* @vite-ignore */ `${ROOT}src/config.ts`)) as { OPTIONS: readonly string[] }).OPTIONS;

const read = (f: string) => readFileSync(`${ROOT}${f}`, 'utf8');

function readmeTable(): { vars: string[]; secrets: string[] } {
  const section = read('README.md').split('\n## Configuration')[1]!.split('\n## ')[0]!;
  const vars: string[] = [];
  const secrets: string[] = [];
  for (const line of section.split('\n')) {
    const m = /^\| `([A-Z_]+)`(.*?) \| (var|secret) \|/.exec(line);
    if (!m) continue;
    // The row for secrets CREDENTIALS names documents a family, not an option of the schema.
    if (m[2]!.includes('CREDENTIALS')) continue;
    (m[3] === 'var' ? vars : secrets).push(m[1]!);
  }
  return { vars, secrets };
}

it('the README configuration table lists exactly the options of the config schema', async () => {
  const options = [...(await loadOptions())].sort();
  const { vars, secrets } = readmeTable();
  expect([...vars, ...secrets].sort()).toEqual(options);
});

it('wrangler.toml gives every var its default, and keys.example names every option', async () => {
  const options = await loadOptions();
  const { vars, secrets } = readmeTable();
  const toml = read('wrangler.toml').split('[vars]')[1]!.split('\n[')[0]!;
  const tomlVars = [...toml.matchAll(/^([A-Z_]+) = /gm)].map((m) => m[1]!).sort();
  expect(tomlVars).toEqual([...vars].sort());
  for (const s of secrets) expect(tomlVars).not.toContain(s); // secrets never in wrangler.toml
  const example = [...read('keys.example').matchAll(/^([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]!);
  for (const o of options) expect(example, o).toContain(o);
});

it("CI runs the README's test command on its fresh clone, as written", () => {
  // The other command, `npm ci && npm run dev`, is run as written by dev-stack.test.ts.
  const blocks = [...read('README.md').matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!.trim());
  expect(blocks).toContain('npm ci && npm test');
  const steps = read('.ci/run')
    .split('\n')
    .filter((l) => /^npm /.test(l))
    .map((l) => l.split(/\s+/).slice(0, 2).join(' '));
  expect(steps).toEqual(['npm ci', 'npm test']);
});
