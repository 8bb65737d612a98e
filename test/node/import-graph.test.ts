/**
 * The Worker's module layering, read from the sources: src/config.ts and src/issuer/ never import
 * each other in a circle, nor do src/app.ts and src/routes/. A small scanner over src/**\/*.ts
 * follows every relative specifier: `import ... from`, `import type ... from`, `export ... from`,
 * side-effect imports and `import('./x.js')` (types written inline, and dynamic imports). Type-only
 * imports count: a circle of types is still two modules that cannot be read one without the other.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));

/** Statements at the start of a line (so never inside a `/** ... *\/` comment, whose lines start with `*`). */
const STATEMENT = /^[ \t]*(?:import|export)\b[^;'"`]*?\bfrom[ \t]*['"]([^'"]+)['"]|^[ \t]*import[ \t]*['"]([^'"]+)['"]/gm;
/** `import('./x.js')`, anywhere in code. */
const INLINE = /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;

/** The module specifiers a source text names, in order of appearance (comments left out). */
function specifiersOf(source: string): string[] {
  const found: { at: number; spec: string }[] = [];
  for (const m of source.matchAll(STATEMENT)) found.push({ at: m.index, spec: (m[1] ?? m[2])! });
  for (const m of source.matchAll(INLINE)) {
    const lineStart = source.lastIndexOf('\n', m.index) + 1;
    const before = source.slice(lineStart, m.index);
    // A line comment, or a line of a block comment: prose, not an import.
    if (before.includes('//') || /^\s*(\*|\/\*)/.test(before)) continue;
    found.push({ at: m.index, spec: m[1]! });
  }
  return found.sort((a, b) => a.at - b.at).map((f) => f.spec);
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(path);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [path] : [];
  });
}

/** `./x.js` from `from`: the .ts file it is compiled from (or a directory's index.ts). */
function resolveSpecifier(from: string, spec: string): string {
  const base = resolve(dirname(from), spec);
  for (const candidate of [base.replace(/\.js$/, '.ts'), base, `${base}.ts`, join(base, 'index.ts')]) {
    if (candidate.endsWith('.ts') && existsSync(candidate)) return candidate;
  }
  throw new Error(`${relative(SRC, from)} imports ${spec}, which resolves to no .ts file`);
}

/** Every src module (path relative to src/) with the src modules it imports. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sourceFiles(SRC)) {
    const deps = specifiersOf(readFileSync(file, 'utf8'))
      .filter((s) => s.startsWith('./') || s.startsWith('../'))
      .map((s) => resolveSpecifier(file, s))
      .filter((p) => !relative(SRC, p).startsWith('..'))
      .map((p) => relative(SRC, p).split('\\').join('/'));
    graph.set(relative(SRC, file).split('\\').join('/'), [...new Set(deps)]);
  }
  return graph;
}

/** The shortest import path from `from` to `to`, or undefined when `from` never reaches `to`. */
function pathBetween(graph: Map<string, string[]>, from: string, to: string): string[] | undefined {
  const parent = new Map<string, string>();
  const queue = [from];
  const seen = new Set([from]);
  while (queue.length) {
    const at = queue.shift()!;
    for (const next of graph.get(at) ?? []) {
      if (seen.has(next)) continue;
      seen.add(next);
      parent.set(next, at);
      if (next === to) {
        const path = [to];
        while (path[0] !== from) path.unshift(parent.get(path[0]!)!);
        return path;
      }
      queue.push(next);
    }
  }
  return undefined;
}

/** Each circle through `module` and a module under `dir`: module -> ... -> x -> ... -> module. */
function cyclesBetween(graph: Map<string, string[]>, module: string, dir: string): string[] {
  const out: string[] = [];
  for (const other of graph.keys()) {
    if (!other.startsWith(dir)) continue;
    const there = pathBetween(graph, module, other);
    const back = there && pathBetween(graph, other, module);
    if (there && back) out.push([...there, ...back.slice(1)].join(' -> '));
  }
  return out;
}

describe('the import scanner', () => {
  it('sees every form of relative import, type-only ones included, and no comment', () => {
    const source = [
      "import { a } from './a.js';",
      "import type { B } from '../b.js';",
      'import {',
      '  c,',
      '  type C,',
      "} from './c.js';",
      "export { d } from './d.js';",
      "export type { E } from './e.js';",
      "import './f.js';",
      "type G = import('./g.js').G;",
      "const h = await import('./h.js');",
      '/**',
      " * import { x } from './comment.js';",
      " * a type such as import('./comment.js').X",
      ' */',
      "// import('./comment.js')",
      "const url = 'https://example.com/from';",
      "export const NO = { 'x': 1 };",
    ].join('\n');
    expect(specifiersOf(source)).toEqual(['./a.js', '../b.js', './c.js', './d.js', './e.js', './f.js', './g.js', './h.js']);
  });

  it('reads the real sources: app.ts reaches the routes, and a route reaches config.ts', () => {
    const graph = importGraph();
    expect(graph.get('app.ts')).toContain('routes/token.ts');
    expect(pathBetween(graph, 'routes/token.ts', 'config.ts')).toBeDefined();
  });
});

describe('module layering', () => {
  const graph = importGraph();

  it('no circle between src/config.ts and src/issuer/', () => {
    expect(cyclesBetween(graph, 'config.ts', 'issuer/')).toEqual([]);
  });

  it('no circle between src/app.ts and src/routes/', () => {
    expect(cyclesBetween(graph, 'app.ts', 'routes/')).toEqual([]);
  });
});
