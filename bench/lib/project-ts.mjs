// The project's own TypeScript modules, loaded through its module hook (scripts/ts-hooks.mjs, the
// one `npm run dev` runs with): the bench takes the stack's ports, names and pins from where the
// stack itself reads them, instead of copies that could drift.
import { register } from 'node:module';

let registered = false;

/** What bench/chain.mjs needs of the project's sources, as one object. */
export async function stackSources() {
  if (!registered) {
    // Before the first .ts import: a hook applies to imports made after it is registered.
    register(new URL('../../scripts/ts-hooks.mjs', import.meta.url));
    registered = true;
  }
  const [adminApi, clientIp, tokenProfile, runtime, processes, gateway, devVars] = await Promise.all([
    import('../../src/admin-api.ts'),
    import('../../src/issuer/client-ip.ts'),
    import('../../src/token-profile.ts'),
    import('../../scripts/local-stack/openclaw-runtime.ts'),
    import('../../scripts/local-stack/processes.ts'),
    import('../../scripts/local-stack/openclaw-gateway.ts'),
    import('../../scripts/local-stack/dev-vars.ts'),
  ]);
  return {
    localStackPorts: adminApi.localStackPorts,
    LOCAL_HOST: adminApi.LOCAL_HOST,
    JWKS_PATH: adminApi.JWKS_PATH,
    CREDENTIALS_FILE: adminApi.CREDENTIALS_FILE,
    DEV_VARS_FILE: adminApi.DEV_VARS_FILE,
    LOCAL_CLIENT_IP: clientIp.LOCAL_CLIENT_IP,
    ACCESS_TOKEN_TYP: tokenProfile.ACCESS_TOKEN_TYP,
    SIGNING_ALG: tokenProfile.SIGNING_ALG,
    gatewayAudience: tokenProfile.gatewayAudience,
    OPENCLAW_VERSION: runtime.OPENCLAW_VERSION,
    GATEWAY_DIR: runtime.GATEWAY_DIR,
    installProblem: runtime.installProblem,
    MARKER_ENV: processes.MARKER_ENV,
    HOME_DIR: gateway.HOME_DIR,
    readDevVars: devVars.readDevVars,
  };
}
