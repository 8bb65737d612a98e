// esbuild options shared by the scripts that bundle a Node program into one self-contained file
// (build-container.mjs, build-cli.mjs): Node >= 20, ESM, dependencies inlined, `.mjs` output.
export const NODE_BUNDLE = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  outExtension: { '.js': '.mjs' },
  legalComments: 'none',
  logLevel: 'warning',
};

// For a bundle that inlines CommonJS code which require()s Node built-ins (undici, the proxy's
// upstream client): gives the ESM bundle a real `require`, or esbuild's shim throws
// "Dynamic require of node:assert is not supported" when the bundle starts. Add it as `banner`.
export const REQUIRE_BANNER = {
  js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);",
};
