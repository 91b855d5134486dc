# The gateway on Node 24, which runs the TypeScript sources directly (type stripping).
FROM node:24-bookworm-slim

WORKDIR /app
ENV NODE_ENV=production \
    GW_HOST=0.0.0.0 \
    GW_PORT=8080 \
    GW_DATABASE_URL=sqlite:/app/data/gateway.db

COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

COPY config ./config
# Served at /openapi.yaml.
COPY openapi.yaml ./
COPY src ./src
RUN mkdir -p /app/data && chown node:node /app/data

# Never run as root; the image's own "node" user owns only the data directory.
USER node
EXPOSE 8080
VOLUME ["/app/data"]

# /healthz: the process answers. Use /readyz for load balancers (it checks buckets, state store and, where the process scans, clamd).
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.GW_PORT || 8080) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

STOPSIGNAL SIGTERM
CMD ["node", "src/server.ts"]
