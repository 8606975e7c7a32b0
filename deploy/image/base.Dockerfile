# The controller image's base for the release workflow: Debian bookworm with git (the controller
# fetches GitOps repositories with it) and ca-certificates, and the `nonroot` user (65532) the chart
# runs as. scripts/image.ts makes the same base with mmdebstrap where there is no BuildKit with
# network access (this project's own test machines), then layers node, helm, kustomize and the
# bundled CLI on top of either.
ARG DEBIAN=docker.io/library/debian:bookworm-slim
FROM ${DEBIAN}
RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* \
 && useradd --uid 65532 --user-group --no-create-home --home-dir /tmp --shell /usr/sbin/nologin nonroot
ENV PATH=/usr/local/bin:/usr/bin:/bin
