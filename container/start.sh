#!/usr/bin/env bash
# Container entry (docs/architecture.md, "Bootstrap and start"): the agent first, until the first credential is on disk
# (and the change hook has configured the gateway), then the agent, the verifying proxy and the
# gateway together. Exits when any of them exits, so the Worker sees the failure.
#
# Environment (set by the Worker, src/sandbox/gateway.ts; no secret in it):
#   BOOTSTRAP_KEY_FILE CREDENTIALS_DIR CREDENTIALS_FILE ISSUER_URL AGENT_PORT AGENT_HOST
#   JWKS_URL EXPECTED_ISSUER EXPECTED_AUDIENCE UPSTREAM_URL PROXY_PORT PROXY_HOST GATEWAY_PORT
# Optional: ON_CHANGE (the change hook), GATEWAY_COMMAND (default: openclaw gateway on loopback).
# With the default gateway, ON_CHANGE defaults to openclaw-reload.mjs: the gateway's secrets.reload
# RPC after every new credentials version (docs/moltworker.md, step 5). Set ON_CHANGE= (empty) for
# no hook.
set -euo pipefail

LIB=${CREDENTIAL_AGENT_LIB:-/usr/local/lib/credential-agent}
: "${BOOTSTRAP_KEY_FILE:?}" "${CREDENTIALS_DIR:?}" "${CREDENTIALS_FILE:?}" "${ISSUER_URL:?}"
: "${JWKS_URL:?}" "${EXPECTED_ISSUER:?}" "${EXPECTED_AUDIENCE:?}" "${UPSTREAM_URL:?}"
AGENT_PORT=${AGENT_PORT:-8788}
AGENT_HOST=${AGENT_HOST:-127.0.0.1}
PROXY_PORT=${PROXY_PORT:-8789}
PROXY_HOST=${PROXY_HOST:-127.0.0.1}
GATEWAY_PORT=${GATEWAY_PORT:-18789}
# Exported: the default hook reaches the gateway on ws://127.0.0.1:$GATEWAY_PORT.
export GATEWAY_PORT
if [ -z "${GATEWAY_COMMAND:-}" ]; then
  GATEWAY_COMMAND="openclaw gateway --port ${GATEWAY_PORT} --bind loopback"
  # Only when unset: an empty ON_CHANGE is the operator's "no hook".
  ON_CHANGE=${ON_CHANGE-"node $LIB/openclaw-reload.mjs"}
fi
FIRST_CREDENTIAL_RETRY_SECONDS=2
# Egress delivery: the platform intercepts the TLS of bound provider hosts and re-signs it with
# its own CA (the Sandbox image installs it here). Node, which OpenClaw runs on, trusts only its
# bundled roots unless told, so its provider calls would fail the handshake without this.
PLATFORM_CA=${PLATFORM_CA:-/etc/cloudflare/certs/cloudflare-containers-ca.crt}
if [ -z "${NODE_EXTRA_CA_CERTS:-}" ] && [ -r "$PLATFORM_CA" ]; then export NODE_EXTRA_CA_CERTS="$PLATFORM_CA"; fi

agent_args=(--bootstrap-key "$BOOTSTRAP_KEY_FILE" --dir "$CREDENTIALS_DIR" --issuer "$ISSUER_URL")
if [ -n "${ON_CHANGE:-}" ]; then agent_args+=(--on-change "$ON_CHANGE"); fi

# 1. The first credential; the gateway must not start without it.
until node "$LIB/refresh.mjs" --once "${agent_args[@]}"; do
  echo "start.sh: no credential yet, retrying in ${FIRST_CREDENTIAL_RETRY_SECONDS}s" >&2
  sleep "$FIRST_CREDENTIAL_RETRY_SECONDS"
done

# 2. Everything together.
node "$LIB/refresh.mjs" "${agent_args[@]}" --port "$AGENT_PORT" --host "$AGENT_HOST" &
agent=$!
node "$LIB/gateway-proxy.mjs" --jwks "$JWKS_URL" --issuer "$EXPECTED_ISSUER" --audience "$EXPECTED_AUDIENCE" \
  --upstream "$UPSTREAM_URL" --credentials "$CREDENTIALS_FILE" --port "$PROXY_PORT" --host "$PROXY_HOST" &
proxy=$!
# GATEWAY_COMMAND is a shell command line chosen by the operator; exec keeps its PID ours.
bash -c "exec $GATEWAY_COMMAND" &
gateway=$!

stop() { kill "$agent" "$proxy" "$gateway" 2>/dev/null || true; }
trap stop TERM INT

# 3. The first to exit ends the container.
status=0
wait -n "$agent" "$proxy" "$gateway" || status=$?
echo "start.sh: a process exited (status $status); stopping the others" >&2
stop
wait || true
exit "$status"
