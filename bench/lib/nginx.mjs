// nginx as a reference reverse proxy for bench:verify: Debian's binary, run with a config of our
// own in the bench's temporary folder (pid, error log and temp paths there too), never the system
// service. Installed with apt-get when missing, except in smoke mode (which must not install).
import { execFileSync, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import path from 'node:path';

/** Where Debian puts the binary; root's PATH has /usr/sbin, other users' often do not. */
const DEBIAN_NGINX = '/usr/sbin/nginx';
/** Debian 12's packages that ship the binary, smallest first (nginx-light is the module-less build). */
const PACKAGES = ['nginx-light', 'nginx'];
/**
 * invoke-rc.d's policy hook (man invoke-rc.d): exit 101 means "do not start services". The
 * package's postinst would otherwise start the system nginx on port 80; the bench runs its own.
 */
const POLICY_RC_D = '/usr/sbin/policy-rc.d';
/** Debian's package manager (the bench installs nginx with it, as root, when nginx is missing). */
const APT_GET = 'apt-get';
/** Time for nginx to listen after it is started (it reads one small config file). */
const READY_MS = 10_000;
const READY_POLL_MS = 50;
/**
 * Idle keep-alive connections nginx keeps to the upstream: more than the load's 32 client
 * connections, so every request finds one (like the proxy's undici pool, which is bounded at 128).
 */
const UPSTREAM_KEEPALIVE = 64;
/**
 * Requests per connection, client side and upstream side. nginx's default (1,000) closes and
 * reopens connections during the load; Node's server and undici's pool have no such limit, so
 * neither does nginx here: both proxies are measured on the same long-lived connections.
 */
const KEEPALIVE_REQUESTS = 1_000_000;
/** nginx's default is 512; the load uses 32 clients plus 32 upstream connections. */
const WORKER_CONNECTIONS = 1024;

function executable(file) {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The nginx binary on PATH or at Debian's place, or null. */
export function findNginx() {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && executable(path.join(dir, 'nginx'))) return path.join(dir, 'nginx');
  }
  return executable(DEBIAN_NGINX) ? DEBIAN_NGINX : null;
}

/**
 * The nginx binary, installed with apt-get if missing (root only). Throws with what to do when it
 * cannot. `log` says that it installs, since that takes a while and changes the machine.
 */
export function ensureNginx(log) {
  const found = findNginx();
  if (found) return found;
  if (process.getuid?.() !== 0) {
    throw new Error('nginx is not installed and this is not root: install it (apt-get install nginx-light) and run the bench again');
  }
  log(`nginx not found: installing Debian's package with apt-get (${PACKAGES.join(' or ')}), without starting its service`);
  const addedPolicy = !existsSync(POLICY_RC_D);
  if (addedPolicy)
    writeFileSync(POLICY_RC_D, '#!/bin/sh\n# bench:verify: no service starts while it installs nginx\nexit 101\n', { mode: 0o755 });
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const apt = (args) => {
    try {
      execFileSync(APT_GET, args, { stdio: ['ignore', 'inherit', 'inherit'], env });
      return true;
    } catch {
      return false;
    }
  };
  try {
    const install = () => PACKAGES.some((p) => apt(['install', '-y', '--no-install-recommends', p]));
    // A fresh machine has no package lists yet: update once, then try again.
    if (!install() && !(apt(['update']) && install())) {
      throw new Error(`apt-get could not install ${PACKAGES.join(' or ')}: install nginx by hand and run the bench again`);
    }
  } finally {
    if (addedPolicy) rmSync(POLICY_RC_D, { force: true });
  }
  const installed = findNginx();
  if (!installed) throw new Error(`apt-get installed nginx, but no nginx binary is on PATH or at ${DEBIAN_NGINX}`);
  return installed;
}

/** `nginx -v` ("nginx version: nginx/1.22.1"; nginx prints it on stderr), or null. */
export function nginxVersion(bin) {
  const r = spawnSync(bin, ['-v'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() || null;
}

/**
 * The config: one worker, an `upstream` block with keep-alive connections (HTTP/1.1, Connection
 * cleared, as nginx's docs require for upstream keep-alive), no access log. It replaces
 * Authorization and sets X-Forwarded-User as our proxy does (fixed values: nginx verifies nothing).
 */
function config({ dir, port, upstreamPort, gatewayToken }) {
  const p = (name) => JSON.stringify(path.join(dir, name));
  return `# Written by bench/verify.mjs for one run; see bench/lib/nginx.mjs.
daemon off;
worker_processes 1;
${process.getuid?.() === 0 ? '# The temp folder is private to the bench user: the worker stays that user.\nuser root;\n' : ''}pid ${p('nginx.pid')};
error_log ${p('error.log')} warn;
events { worker_connections ${WORKER_CONNECTIONS}; }
http {
  access_log off;
  client_body_temp_path ${p('client_body')};
  proxy_temp_path ${p('proxy')};
  fastcgi_temp_path ${p('fastcgi')};
  uwsgi_temp_path ${p('uwsgi')};
  scgi_temp_path ${p('scgi')};
  keepalive_requests ${KEEPALIVE_REQUESTS};
  upstream gateway {
    server 127.0.0.1:${upstreamPort};
    keepalive ${UPSTREAM_KEEPALIVE};
    keepalive_requests ${KEEPALIVE_REQUESTS};
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://gateway;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer ${gatewayToken}";
      proxy_set_header X-Forwarded-User "bench-user";
    }
  }
}
`;
}

function portOpen(port) {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Starts nginx in `dir` through `spawn(cmd, args, options)` (the bench's tracked, pinned spawn),
 * and resolves to the child once nginx listens on `port`. Stopping the child (SIGTERM) stops nginx:
 * with `daemon off` the child is nginx's master.
 */
export async function startNginx({ bin, dir, port, upstreamPort, gatewayToken, spawn }) {
  await mkdir(dir, { recursive: true });
  const conf = path.join(dir, 'nginx.conf');
  await writeFile(conf, config({ dir, port, upstreamPort, gatewayToken }));
  // -e: the error log before the config is read (nginx's default is /var/log/nginx); -p: prefix.
  const child = spawn(bin, ['-p', `${dir}/`, '-e', path.join(dir, 'error.log'), '-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  let exited = null;
  child.exited.then((e) => (exited = e));
  const until = Date.now() + READY_MS;
  while (!(await portOpen(port))) {
    const errorLog = () => {
      try {
        return readFileSync(path.join(dir, 'error.log'), 'utf8');
      } catch {
        return '';
      }
    };
    if (exited) throw new Error(`nginx exited at start (${JSON.stringify(exited)}):\n${stderr}${errorLog()}`);
    if (Date.now() > until) throw new Error(`nginx not listening within ${READY_MS} ms:\n${stderr}${errorLog()}`);
    await new Promise((r) => setTimeout(r, READY_POLL_MS));
  }
  return child;
}

/** PIDs of nginx's workers (children of the master), for the others-on-the-core figure. */
export function nginxWorkers(masterPid) {
  try {
    return readFileSync(`/proc/${masterPid}/task/${masterPid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}
