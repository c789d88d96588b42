# syntax=docker/dockerfile:1
#
# VoP responder image: `vop serve` (Litestar on granian) as UID 10001, read-only root filesystem.
#
#   docker build -t vop-responder:$(git rev-parse --short HEAD) .
#   docker run --rm --read-only --tmpfs /tmp --tmpfs /run/vop --tmpfs /var/lib/vop \
#     --tmpfs /var/log/vop/audit -e VOP_HOST=127.0.0.1 -p 8080:8080 vop-responder:<tag>
#   (on a non-loopback bind the service insists on VOP_JWT_JWKS/_ISSUER/_AUDIENCE and VOP_AUDIT_KEY;
#    see deploy/README.md. Kubernetes mounts emptyDirs on exactly those four paths.)
#
# Base image: pinned by its full patch tag. For a reproducible, tamper-evident build pin the digest
# as well — resolve it once and paste it after the tag (tag@sha256:…; the digest wins, the tag
# stays as documentation), and let Renovate/Dependabot bump both together:
#   docker buildx imagetools inspect python:3.11.11-slim-bookworm --format '{{json .Manifest.Digest}}'
#   (or: crane digest python:3.11.11-slim-bookworm)
#   ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm@sha256:<that digest>
# Both stages use the same base, so the venv's interpreter symlink stays valid in the runtime stage.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# ---- build: resolve nothing, install only what the lock files pin (hash-checked, wheels only) ---
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src

# A C compiler for the compiled build (mypyc turns the hot path's modules, app/compiled.py, into C
# extensions); only this stage has it. libc6-dev is not pinned: it must equal the libc6 that apt
# resolves with it, which follows Debian's security updates of bookworm.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc=4:12.2.0-3 libc6-dev \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*

# Build tools (setuptools, wheel, mypy for mypyc) in their own venv, from their own hashed lock: the
# project wheel is built without network access to an unpinned build backend (no build isolation).
COPY requirements-build.lock ./
RUN python -m venv /opt/build-tools \
    && /opt/build-tools/bin/pip install --require-hashes --no-deps --only-binary=:all: \
       -r requirements-build.lock

# Runtime dependencies: the layer only changes when requirements.lock does.
COPY requirements.lock ./
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --require-hashes --no-deps --only-binary=:all: -r requirements.lock

COPY pyproject.toml setup.py README.md ./
COPY app ./app
COPY matching ./matching
COPY bench ./bench
# VOP_MYPYC=1: the compiled build (setup.py), type-checked against the runtime venv's packages
# (VOP_MYPYC_PYTHON). The image imports those modules from their C extensions (checked here);
# vop_hot_path_interpreted_modules is 0 on /metrics and the start-up log says so.
RUN VOP_MYPYC=1 VOP_MYPYC_PYTHON=/opt/venv/bin/python \
       /opt/build-tools/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/wheels . \
    && /opt/venv/bin/pip install --no-deps /tmp/wheels/vop_responder-*.whl \
    && /opt/venv/bin/python -I -c "from app.compiled import compiled_status as s; assert all(s().values()), s()" \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib \
    && /opt/venv/bin/pip uninstall --yes pip setuptools

# ---- runtime ------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="vop-responder" \
      org.opencontainers.image.description="Verification of Payee responder (EPC VoP scheme)" \
      org.opencontainers.image.licenses="Proprietary"

# tini as PID 1: the kernel gives PID 1 no default signal actions, so a SIGTERM that arrives while
# Python is still importing (before granian installs its handlers) would be ignored until SIGKILL;
# tini also reaps orphaned children. tini forwards SIGTERM to granian's main process only (no -g):
# granian's main process runs the drain window (VOP_DRAIN_SECONDS, /readyz 503) and then stops its
# workers itself. Signalling the whole group would stop the workers at once, skipping the drain.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log

# Numeric UID/GID so runAsNonRoot can verify it without /etc/passwd lookups. The writable paths
# exist in the image (owned by the service user) but are meant to be mounted: tmpfs/emptyDir.
RUN groupadd --system --gid 10001 vop \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin vop \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/vop /run/vop /var/log/vop /var/log/vop/audit

COPY --from=build /opt/venv /opt/venv

# Writable paths, all outside the read-only root: VOP_DATA_DIR (demo snapshot, Redis index cache),
# VOP_RUNTIME_DIR with PROMETHEUS_MULTIPROC_DIR (per-worker metric files, drain marker),
# VOP_AUDIT_DIR (audit trail; ship it off the pod) and TMPDIR.
ENV PATH=/opt/venv/bin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONFAULTHANDLER=1 \
    TMPDIR=/tmp \
    VOP_HOST=0.0.0.0 \
    VOP_PORT=8080 \
    VOP_WORKERS=2 \
    VOP_DATA_DIR=/var/lib/vop \
    VOP_RUNTIME_DIR=/run/vop \
    PROMETHEUS_MULTIPROC_DIR=/run/vop/metrics \
    VOP_AUDIT_DIR=/var/log/vop/audit \
    VOP_LOG_LEVEL=info

USER 10001:10001
WORKDIR /var/lib/vop
EXPOSE 8080

# Liveness for plain `docker run` (Kubernetes ignores HEALTHCHECK and uses its probes). No curl in
# the image: the interpreter that is already there fetches /healthz; any non-2xx or error exits 1.
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os,urllib.request as u; u.urlopen('http://127.0.0.1:'+os.environ.get('VOP_PORT','8080')+'/healthz', timeout=2).close()"]

ENTRYPOINT ["/usr/bin/tini", "--", "vop", "serve"]
CMD []
