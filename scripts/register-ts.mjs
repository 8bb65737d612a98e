// Lets Node run the TypeScript sources directly (`node --import ./scripts/register-ts.mjs x.ts`):
// a module hook that strips types with esbuild and maps the sources' `.js` specifiers to `.ts`.
// For development runs (`npm run agent`, `npm run gateway-proxy`); the container uses the bundle.
import { register } from 'node:module';

register('./ts-hooks.mjs', import.meta.url);
