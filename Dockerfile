# syntax=docker/dockerfile:1
# The mmssr curator: `docker build -t mmssr .`, then `docker run --rm mmssr --help`.
# docker-compose.yml builds it for the whole stack (deploy/README.md). Never built in this
# project's CI (no Docker engine there): test/integration/deploy-config.broker.test.ts lints
# this file with hadolint, checks what the runtime stage copies, and runs its HEALTHCHECK
# against a real curator.

# package.json's engines ask for Node >= 20.19 and npm >= 11.16: npm 11.16 is the first that
# honours `allowScripts`, which denies onnxruntime-node's install script (a CUDA download from
# NuGet), and .npmrc's engine-strict makes the npm 10 of the node:20 images refuse to install.
FROM node:20-bookworm-slim AS base
ARG NPM_VERSION=11.19.1
RUN npm install --global --no-audit --no-fund "npm@${NPM_VERSION}" \
  && npm cache clean --force
WORKDIR /app

FROM base AS build
COPY package.json package-lock.json .npmrc ./
# The `prepare` script is the build (tsc), and the sources are not here yet: it runs below,
# after them, so that this layer stays cached until the lockfile changes. No install script
# is needed to compile.
RUN --mount=type=cache,target=/root/.npm \
  npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY connectors ./connectors
COPY models ./models
COPY bench ./bench
RUN npm run build

FROM base AS runtime
ENV NODE_ENV=production
COPY package.json package-lock.json .npmrc ./
# --ignore-scripts: `prepare` needs tsc, a devDependency; the CPU build of onnxruntime-node
# and sharp's prebuilt binaries need no install script.
RUN --mount=type=cache,target=/root/.npm \
  npm ci --omit=dev --ignore-scripts --no-audit --no-fund
COPY --from=build /app/dist ./dist
COPY bin ./bin
# The bundled models: mmssr-lite is the default of `curate` and `score`; mmssr-vision and the
# image classifier it uses are one --model flag away.
COPY models/mmssr-lite ./models/mmssr-lite
COPY models/mmssr-vision ./models/mmssr-vision
COPY models/vision/mobilenet-v2-nsfwjs ./models/vision/mobilenet-v2-nsfwjs
# `mmssr demo` reads its bundled samples and images from here.
COPY src/demo ./src/demo
# /data is the working folder (relative paths such as the demo's out/demo land there) and
# /data/out the output volume; both belong to the user the curator runs as (USER below), and a
# named volume mounted there starts with this ownership.
RUN ln -s /app/bin/mmssr.js /usr/local/bin/mmssr \
  && mkdir -p /data/out \
  && chown -R 1000:1000 /data
# The metrics server (/metrics and /healthz) is on in every `curate` of this image: Prometheus
# scrapes it and the HEALTHCHECK below asks it. It binds 127.0.0.1 unless --metrics-host says
# otherwise (docker-compose.yml gives 0.0.0.0).
ENV MMSSR_METRICS_PORT=9464
EXPOSE 9464 8080
# The image's `node` user, by number: a runtime that refuses root (Kubernetes runAsNonRoot)
# can verify a number, not a name.
USER 1000:1000
WORKDIR /data
# Node itself: the slim image has no curl or wget. Only `curate` serves metrics, so a one-off
# command (score, select, produce) in this image reports unhealthy, which nothing waits on.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.MMSSR_METRICS_PORT||9464)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["mmssr"]
CMD ["--help"]
