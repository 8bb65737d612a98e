// Types of bundle-options.mjs, for the TypeScript scripts that bundle (scripts/dev.ts).
import type { BuildOptions } from 'esbuild';

export declare const NODE_BUNDLE: BuildOptions;
export declare const REQUIRE_BANNER: { js: string };
