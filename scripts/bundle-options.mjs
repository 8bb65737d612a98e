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
