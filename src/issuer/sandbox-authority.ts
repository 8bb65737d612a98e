/**
 * SandboxAuthority: the Durable Object, one per sandbox, that will hold the sandbox's bootstrap
 * public key, its jti replay store and its audit log (the token-endpoint work). The class exists
 * now so the Durable Object migration that creates both classes is written once.
 */
import { DurableObject } from 'cloudflare:workers';
import type { Env } from '../config.js';

export class SandboxAuthority extends DurableObject<Env> {}
