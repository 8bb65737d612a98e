/**
 * Worker entry: the Hono app, the Durable Object classes, and the Sandbox SDK's exports.
 */
import { createApp } from './app.js';

import { sandboxApi } from './sandbox/index.js';

export { KeyAuthority } from './issuer/key-authority.js';
export { SandboxAuthority } from './issuer/sandbox-authority.js';
export { ContainerProxy, Sandbox } from './sandbox/index.js';

// With the Sandbox binding, the gateway runs in the sandbox (restart, push); without, elsewhere.
const app = createApp({ sandbox: (env, id) => sandboxApi(env, id) });

export default {
  fetch: app.fetch,
} satisfies ExportedHandler<import('./config.js').Env>;
