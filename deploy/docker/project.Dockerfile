# syntax=docker/dockerfile:1
# A project baked into an image derived from orch's: what to run in production when the project should
# move with the image (one tag = one rules/workflows version), rather than be mounted.
#
#   docker build -t orch:0.1.0 .                                               # orch's image (../../Dockerfile)
#   docker build -f deploy/docker/project.Dockerfile -t my-orch-project:1 examples/
#
# The build context is the project directory (rules/, workflows/, schemas/ ...).
ARG ORCH_IMAGE=orch:0.1.0
FROM ${ORCH_IMAGE}

# Libraries the project's workflows import (uncomment; requirements.txt in the project directory):
# USER root
# COPY requirements.txt /tmp/requirements.txt
# RUN pip install --no-cache-dir -r /tmp/requirements.txt
# USER 10001:10001

# Owned by root, read by orch's user: a task cannot change the code it runs.
COPY --chown=root:root . /project
ENV ORCH_PROJECT=/project
# Refuse to build an image whose rules or workflows do not load (no Redis needed).
RUN ["orch", "validate", "--no-redis", "--project", "/project"]
