/**
 * The issuer's HTTP API as the CLI sees it: admin calls with credentials, public calls without,
 * a timeout on every request, and every failure turned into a CliError with its exit code.
 * Nothing here ever puts a credential into a message.
 */
import {
  ADMIN_PREFIX,
  ADMIN_ROUTES,
  type AdminAnswers,
  type AdminRoute,
  adminPath,
  type ErrorAnswer,
  isLoopbackUrl,
} from '../src/admin-api.js';
import { CliError, EXIT, oneLine } from './errors.js';
import type { AdminCredentials } from './options.js';

/** The issuer's error codes are short snake_case words; anything longer is cut. */
const ERROR_CODE_MAX_CHARS = 60;

export interface ClientConfig {
  issuer: URL;
  credentials: AdminCredentials;
  timeoutMs: number;
  fetch?: typeof fetch;
}

/** The methods the admin API uses. */
type Method = (typeof ADMIN_ROUTES)[AdminRoute]['method'];

/** Node's fetch reports network failures as a TypeError whose `cause` carries the system code. */
function networkReason(e: unknown, timeoutMs: number): string {
  const err = e as { name?: string; cause?: { code?: string; name?: string; message?: string } };
  if (err?.name === 'TimeoutError' || err?.cause?.name === 'TimeoutError') return `no answer within ${timeoutMs / 1000} s`;
  // The fetch standard blocks some ports (1, 25, 6000, ...) before connecting.
  if (err?.cause?.message === 'bad port') return 'a port fetch refuses to use';
  const code = err?.cause?.code;
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'host name not found';
    case 'ECONNRESET':
    case 'UND_ERR_SOCKET':
      return 'connection reset';
    case 'ETIMEDOUT':
    case 'UND_ERR_CONNECT_TIMEOUT':
      return 'connection timed out';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return 'no route to host';
    case undefined:
      return 'network error';
    default:
      // A TLS failure and the like: the system code names it without any request data.
      return /^[A-Z0-9_]{2,64}$/.test(code) ? code : 'network error';
  }
}

function isErrorAnswer(v: unknown): v is ErrorAnswer {
  return typeof v === 'object' && v !== null && typeof (v as ErrorAnswer).error === 'string';
}

export class IssuerClient {
  readonly #cfg: ClientConfig;
  readonly #fetch: typeof fetch;

  constructor(cfg: ClientConfig) {
    this.#cfg = cfg;
    this.#fetch = cfg.fetch ?? fetch;
  }

  get origin(): string {
    return this.#cfg.issuer.href.replace(/\/+$/, '');
  }

  /** Whether any admin credential is configured (without sending it anywhere). */
  get hasAdminCredentials(): boolean {
    const c = this.#cfg.credentials;
    return c.adminToken !== undefined || c.access !== undefined;
  }

  /** One admin route of the contract (ADMIN_ROUTES), its parameters filled in, its answer typed. */
  call<R extends AdminRoute>(route: R, params?: Record<string, string>, query?: URLSearchParams): Promise<AdminAnswers[R]> {
    return this.admin<AdminAnswers[R]>(ADMIN_ROUTES[route].method, adminPath(route, params, query));
  }

  /** An admin call: `path` is under ADMIN_PREFIX. */
  admin<T>(method: Method, path: string): Promise<T> {
    return this.#request<T>(method, `${ADMIN_PREFIX}${path}`, this.#adminHeaders());
  }

  /** A public call (the JWKS): no credentials are sent. */
  public<T>(path: string): Promise<T> {
    return this.#request<T>('GET', path, {});
  }

  #adminHeaders(): Record<string, string> {
    const c = this.#cfg.credentials;
    if (c.adminToken === undefined && c.access === undefined) {
      throw new CliError(
        EXIT.auth,
        'no admin credentials: set ADMIN_TOKEN (or --admin-token), or CF_ACCESS_CLIENT_ID and CF_ACCESS_CLIENT_SECRET for a Worker behind Cloudflare Access',
      );
    }
    const u = this.#cfg.issuer;
    if (u.protocol === 'http:' && !isLoopbackUrl(u)) {
      throw new CliError(EXIT.usage, `refusing to send admin credentials over plain http to ${u.host}; use an https issuer URL`);
    }
    const h: Record<string, string> = {};
    if (c.adminToken !== undefined) h.Authorization = `Bearer ${c.adminToken}`;
    if (c.access) {
      h['CF-Access-Client-Id'] = c.access.clientId;
      h['CF-Access-Client-Secret'] = c.access.clientSecret;
    }
    return h;
  }

  #authHint(): string {
    const c = this.#cfg.credentials;
    if (c.access && c.adminToken === undefined) return 'check CF_ACCESS_CLIENT_ID and CF_ACCESS_CLIENT_SECRET';
    if (c.source === 'dev-vars') return 'check ADMIN_TOKEN in ./.dev.vars (read because no ADMIN_TOKEN was set)';
    return c.access ? 'check ADMIN_TOKEN and the Cloudflare Access service token' : 'check ADMIN_TOKEN';
  }

  async #request<T>(method: Method, path: string, headers: Record<string, string>): Promise<T> {
    const url = `${this.origin}${path}`;
    let res: Response;
    let text: string;
    try {
      res = await this.#fetch(url, {
        method,
        // JSON on every request: the admin API refuses a state-changing one without it (CSRF rule).
        headers: { Accept: 'application/json', ...(method === 'GET' ? {} : { 'Content-Type': 'application/json' }), ...headers },
        // A login redirect (Cloudflare Access) is an answer to report, not a page to follow.
        redirect: 'manual',
        signal: AbortSignal.timeout(this.#cfg.timeoutMs),
      });
      text = await res.text();
    } catch (e) {
      throw new CliError(
        EXIT.unreachable,
        `cannot reach the issuer at ${this.origin} (${networkReason(e, this.#cfg.timeoutMs)}); is it running? set --issuer or ISSUER_URL`,
      );
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    const auth = res.status === 401 || res.status === 403;
    if (auth) {
      const why = isErrorAnswer(body)
        ? `${res.status} ${oneLine(body.error, ERROR_CODE_MAX_CHARS)}: ${oneLine(body.error_description ?? '')}`
        : `${res.status}, not the issuer's answer: Cloudflare Access?`;
      throw new CliError(EXIT.auth, `the issuer refused the admin credentials (${why}); ${this.#authHint()}`);
    }
    if (res.status >= 300 && res.status < 400) {
      const to = res.headers.get('Location') ?? '';
      const login = /cloudflareaccess\.com|\/cdn-cgi\/access\//.test(to);
      if (login) throw new CliError(EXIT.auth, `Cloudflare Access redirected to its login page (${res.status}); ${this.#authHint()}`);
      throw new CliError(
        EXIT.unreachable,
        `the answer from ${this.origin} is a redirect (${res.status}), not the issuer's API; check --issuer`,
      );
    }
    if (!res.ok && isErrorAnswer(body)) {
      const hint =
        body.error === 'rotation_too_soon'
          ? ' (credctl keys rotate --force rotates anyway)'
          : body.error === 'too_many_retiring_keys'
            ? ' (credctl keys revoke <kid> stops a key at once)'
            : '';
      throw new CliError(
        EXIT.issuer,
        `the issuer answered ${res.status} ${oneLine(body.error, ERROR_CODE_MAX_CHARS)}: ${oneLine(body.error_description ?? '')}${hint}`,
      );
    }
    if (!res.ok || typeof body !== 'object' || body === null) {
      const type = (res.headers.get('Content-Type') ?? 'no content type').split(';')[0];
      throw new CliError(
        EXIT.unreachable,
        `the answer from ${this.origin}${path} is not the issuer's API (HTTP ${res.status}, ${oneLine(type ?? '', ERROR_CODE_MAX_CHARS)}); check --issuer`,
      );
    }
    return body as T;
  }
}
