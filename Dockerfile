# syntax=docker/dockerfile:1
# One image for every function; the bundles are small (a few MB each) so shipping all of them
# keeps one build, one scan and one tag. The Kubernetes manifests pick the entry with `command`;
# `--build-arg FUNCTION=<entry>` only sets the default CMD for `docker run`.
#   docker build -t gputel:dev .
#   docker build --build-arg FUNCTION=upload -t gputel-upload:dev .
# Entries: upload, query, remote-write (HTTP on $PORT), ingest-worker, collect-worker (JetStream pull workers),
# provision (one-shot, exits 0).
ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
COPY patches ./patches
# Full install: esbuild is a dev dependency. --ignore-scripts: no dependency runs install hooks
# (esbuild works without its postinstall; chdb, a test-only dev dependency, stays in this stage).
# Our own postinstall, patch-package (patches/: a fix to nats.js, see patches/README.md), is run
# explicitly; it fails the build if a patch no longer applies.
RUN --mount=type=cache,target=/root/.npm npm ci --ignore-scripts --no-audit --no-fund && npx patch-package --error-on-fail
COPY tsconfig.json ./
COPY shared ./shared
COPY functions ./functions
# esbuild bundles every dependency into dist/*.js, so the runtime stage needs no node_modules.
RUN npm run build

FROM ${NODE_IMAGE} AS runtime
ARG FUNCTION=query
# HTTP_HOST: a container listens on all its interfaces (the code's default is loopback).
# Memory (test/local/stack.ts functionNodeFlags, `npm run bench:memory`): glibc's mmap threshold
# fixed at 128 KiB, so freed Buffers of that size or more are returned to the OS at once; the
# byte-streaming functions' manifests add a 1 MiB young-generation semi-space and a 256 MiB old
# generation to their command (the upload also a 2× heap growth; test/manifests.test.ts checks the
# manifests against functionNodeFlags).
ENV NODE_ENV=production \
    NODE_OPTIONS="--enable-source-maps" \
    MALLOC_MMAP_THRESHOLD_=131072 \
    HTTP_HOST=0.0.0.0 \
    FUNCTION=${FUNCTION}
WORKDIR /app
# Owned by root and not writable by the runtime user; the pods also mount the root read-only.
COPY --from=build /src/dist ./dist
# Numeric UID (the image's `node` user) so kubelet can verify runAsNonRoot.
USER 1000:1000
EXPOSE 8080
# exec: node becomes PID 1 and receives SIGTERM itself (the entries drain on it).
CMD ["sh", "-c", "exec node dist/${FUNCTION}.js"]
