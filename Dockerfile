# syntax=docker/dockerfile:1
# The orch image: one image for every role (api, engine, worker, triggers), chosen by the command.
#
#   docker build -t orch:0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#   docker run --rm orch:0.1.0 --help
#
# The project (rules/, workflows/) is not in this image: put it in a derived image
# (deploy/docker/project.Dockerfile) or mount it at /project (deploy/compose/compose.yaml).
# No container daemon runs where orch is developed: tests/deploy/test_dockerfile.py lints this file
# with hadolint and checks the points below (stages, user, labels, pinned bases).

# -- build: the orch wheel and a wheel of every dependency ------------------------------------------
FROM python:3.12-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY orchestrator/ orchestrator/
COPY triggers/ triggers/
COPY executors/ executors/
RUN pip wheel --no-cache-dir --disable-pip-version-check --wheel-dir /wheels .

# -- runtime: the wheels installed, no build inputs, a user without privileges -----------------------
FROM python:3.12-slim-bookworm AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="orch" \
      org.opencontainers.image.description="Event-driven workflow orchestrator on Redis: api, engine, worker and triggers roles" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT"

# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can check it and volume ownership is predictable.
RUN groupadd --system --gid 10001 orch \
 && useradd --system --uid 10001 --gid orch --create-home --home-dir /home/orch --shell /usr/sbin/nologin orch

# tini as PID 1 (Kubernetes has no `init: true`): it passes SIGTERM on to orch, and reaps the zombies a
# task's own child processes leave when they outlive it (orch reaps only the children it forked itself).
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
 && rm -rf /var/lib/apt/lists/*

# The wheels come through a bind mount of the build stage: none of them stays in a layer.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --disable-pip-version-check --no-index --find-links=/wheels /wheels/orch-*.whl

# The project directory belongs to root: orch only reads it (workflows are imported without writing
# bytecode). A container's API must listen beyond loopback to be reached; tokens stay required.
RUN mkdir /project
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ORCH_PROJECT=/project \
    ORCH_API_HOST=0.0.0.0 \
    ORCH_API_PORT=8000 \
    ORCH_LOG_FORMAT=json

# No HEALTHCHECK here: each role has its own probe (`orch health --role R`, the API's /healthz), set by
# deploy/compose/compose.yaml and the Kubernetes manifests.
USER 10001:10001
WORKDIR /project
EXPOSE 8000
ENTRYPOINT ["/usr/bin/tini", "--", "orch"]
CMD ["--help"]
