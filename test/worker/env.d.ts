type ProjectEnv = import('../../src/config.js').Env;
declare namespace Cloudflare {
  interface Env extends ProjectEnv {}
}
