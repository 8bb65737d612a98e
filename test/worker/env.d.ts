type ProjectEnv = import('../../src/config.js').Env;
declare namespace Cloudflare {
  interface Env extends ProjectEnv {
    /** Test binding (vitest.config.ts): the gateway master secret CREDENTIALS names. */
    MOLTBOT_GATEWAY_TOKEN?: string;
  }
}
