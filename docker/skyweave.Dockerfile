# The skyweave image every pipeline image builds FROM: Python 3.11 with skyweave installed in a
# virtual environment.  Build it once from the repository root:
#
#   docker build -f docker/skyweave.Dockerfile -t skyweave:local .
#
# Its own base is LOCAL: nothing is pulled from a container registry.  Make it once, either
#   * from a Debian root file system (bookworm ships Python 3.11; needs a Debian package mirror,
#     not a container registry):
#       sudo debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
#           bookworm /tmp/rootfs http://deb.debian.org/debian
#       sudo tar -C /tmp/rootfs -c . | docker import - skyweave-base:py3.11
#   * or from a python:3.11-slim image already on the machine (or carried over as a tarball made
#     with `docker save` elsewhere: `docker load -i python-3.11-slim.tar`):
#       docker tag python:3.11-slim skyweave-base:py3.11
# then build with the default BASE, or pass --build-arg BASE=<local image>.
#
# Python packages come from PyPI through pip (a package index, not a container registry); for an
# offline build pass --build-arg PIP_OPTS="--no-index --find-links /wheels" with a wheelhouse
# copied into the context (see pipelines/xray_ep/README.md, "Containers").
ARG BASE=skyweave-base:py3.11
FROM ${BASE}

ARG PIP_OPTS=""
ENV VIRTUAL_ENV=/opt/skyweave \
    PATH=/opt/skyweave/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_OPTS=${PIP_OPTS}

RUN python3 -m venv /opt/skyweave

WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY src ./src
# the versions CI tests (constraints.txt, kept in /src: the pipeline images install with it too)
RUN pip install --no-cache-dir ${PIP_OPTS} -c /src/constraints.txt /src && skyweave --help > /dev/null

WORKDIR /data
