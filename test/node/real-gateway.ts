/**
 * For the tests of the real gateway (OpenClaw from `.gateway/`, npm run gateway:install). Where it
 * is not installed they are skipped, visibly, with the reason; where it is required (.ci/run sets
 * REQUIRE_REAL_GATEWAY=1, and any CI) they run and fail on the missing install instead, so CI can
 * never pass without them.
 */
import { it } from 'vitest';
import { installProblem } from '../../scripts/local-stack/openclaw-runtime.js';
import { ROOT } from './worker-process.js';

export const GATEWAY_PROBLEM = installProblem(ROOT);
const REQUIRED = process.env.REQUIRE_REAL_GATEWAY === '1' || (process.env.CI ?? '') !== '';

/** `it` for a test of the real gateway: see above. Call assertRealGateway() first in its body. */
export const itRealGateway = GATEWAY_PROBLEM !== undefined && !REQUIRED ? it.skip : it;

export function assertRealGateway(): void {
  if (GATEWAY_PROBLEM !== undefined) throw new Error(`the real gateway is not installed (${GATEWAY_PROBLEM}): run npm run gateway:install`);
}
