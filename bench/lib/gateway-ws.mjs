// OpenClaw's WebSocket protocol, as test/node/openclaw-chain.test.ts speaks it: the gateway sends
// `connect.challenge`, the client answers `connect` (operator role, no device: the trusted proxy
// vouches for the user), the gateway answers hello-ok; then requests `{type:"req",id,method,params}`
// answered by `{type:"res",id,ok,payload}`. Node 20 has no WebSocket client, so `ws` (the tests' own).
import WebSocket from 'ws';

/** The gateway's protocol version (OpenClaw 2026.9.6, docs/gateway/protocol/handshake.md). */
const PROTOCOL = 4;
/**
 * A probe client: OpenClaw keeps probes out of its presence list, so the bench's connections do not
 * show in the Control UI of whoever looks at the stack meanwhile.
 */
const CLIENT = { id: 'openclaw-probe', displayName: 'bench:chain', version: '1.0.0', platform: process.platform, mode: 'probe' };
/** A request the gateway has not answered by then has failed (a health snapshot takes ~1 ms). */
const CALL_TIMEOUT_MS = 15_000;
/** The upgrade, the challenge and hello-ok, through the whole chain on a loaded machine. */
const OPEN_TIMEOUT_MS = 30_000;

/** Rejects with `what` if `promise` takes longer than `ms`. */
function within(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms / 1000} s`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export class GatewayClient {
  #n = 0;
  #waiting = new Map();
  #challenge;

  constructor(ws) {
    this.ws = ws;
    // Listening from the start: the challenge can arrive in the same read as the 101 answer.
    this.#challenge = new Promise((resolve) => {
      ws.on('message', (data) => {
        const f = JSON.parse(data.toString());
        if (f.type === 'event' && f.event === 'connect.challenge') resolve();
        if (f.type === 'res' && f.id) this.#waiting.get(f.id)?.(f);
      });
    });
  }

  /** Opens `url` with `headers` on the upgrade and completes the handshake as an operator with `scopes`. */
  static async open(url, headers, scopes) {
    const c = new GatewayClient(new WebSocket(url, { headers, perMessageDeflate: false }));
    const opened = new Promise((resolve, reject) => {
      c.ws.once('open', resolve);
      c.ws.once('unexpected-response', (_req, res) => reject(new Error(`WebSocket upgrade answered HTTP ${res.statusCode}`)));
      c.ws.once('error', reject);
    });
    await within(
      opened.then(() => c.#challenge),
      OPEN_TIMEOUT_MS,
      `WebSocket to ${url}`,
    );
    const hello = await c.call('connect', { minProtocol: PROTOCOL, maxProtocol: PROTOCOL, client: CLIENT, role: 'operator', scopes });
    if (!hello.ok) throw new Error(`connect refused by the gateway: ${JSON.stringify(hello.error).slice(0, 300)}`);
    return c;
  }

  /** One request; resolves with the gateway's answer frame. */
  call(method, params) {
    const id = String(++this.#n);
    const answered = new Promise((resolve) => {
      this.#waiting.set(id, (f) => {
        this.#waiting.delete(id);
        resolve(f);
      });
    });
    this.ws.send(JSON.stringify({ type: 'req', id, method, params }));
    return within(answered, CALL_TIMEOUT_MS, method);
  }

  close() {
    return new Promise((resolve) => {
      if (this.ws.readyState === WebSocket.CLOSED) return resolve();
      this.ws.once('close', resolve);
      this.ws.terminate();
    });
  }
}
