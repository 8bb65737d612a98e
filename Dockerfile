# The gateway's container: the Cloudflare Sandbox base image at the SDK's version (package.json),
# the agent and the verifying proxy as single bundled files (npm run build:container), and
# start.sh. No secret is baked in: credentials arrive at run time through the agent.
FROM docker.io/cloudflare/sandbox:0.12.10

COPY dist/container/refresh.mjs /usr/local/lib/credential-agent/refresh.mjs
COPY dist/container/gateway-proxy.mjs /usr/local/lib/credential-agent/gateway-proxy.mjs
# The change hook for OpenClaw (container/openclaw-reload.ts): secrets.reload after a new
# credentials version; start.sh's default ON_CHANGE with the default gateway command.
COPY dist/container/openclaw-reload.mjs /usr/local/lib/credential-agent/openclaw-reload.mjs
COPY container/start.sh /usr/local/bin/start.sh
RUN chmod 755 /usr/local/bin/start.sh

# The gateway itself (OpenClaw, as moltworker pins it) is installed by the deployment's own layer,
# e.g.: RUN npm install -g openclaw@2026.2.3
