/**
 * Worker entry: the Hono app and the Durable Object classes.
 */
import { createApp } from './app.js';

export { KeyAuthority } from './issuer/key-authority.js';
export { SandboxAuthority } from './issuer/sandbox-authority.js';

const app = createApp();

export default {
  fetch: app.fetch,
} satisfies ExportedHandler<import('./config.js').Env>;
