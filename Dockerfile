# meshkv node image: build in one stage, run as a non-root user with /data as the volume.
# It listens on 0.0.0.0, so protected mode applies: give it MESHKV_ROOT_TOKEN (or
# MESHKV_ROOT_TOKEN_FILE, e.g. a mounted secret), and MESHKV_SECRET (or MESHKV_SECRET_FILE) for peers.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY bin ./bin
RUN npm ci --ignore-scripts && npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production MESHKV_DIR=/data MESHKV_HOST=0.0.0.0 MESHKV_PORT=7700
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/bin ./bin
# The cluster page's files (/ui), read at run time from next to dist/.
COPY ui ./ui
COPY package.json ./
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 7700
# A health check without curl: node's own http(s) client against /readyz, which needs no token.
# With MESHKV_TLS_CERT the node serves HTTPS; its certificate need not name 127.0.0.1, so the check
# skips verification (it only asks this container's own node whether it is ready).
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "const t=!!process.env.MESHKV_TLS_CERT;require(t?'https':'http').get({host:'127.0.0.1',port:process.env.MESHKV_PORT||7700,path:'/readyz',rejectUnauthorized:false,timeout:2500},r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1))"]
ENTRYPOINT ["node", "/app/bin/meshkv.js"]
CMD ["node"]
