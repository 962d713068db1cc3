# AgentHub container image.
#
#   docker build -t agenthub:0.1.0 .
#   docker run --rm -p 8787:8787 agenthub:0.1.0
#
# Stage 1 builds the wheel; building it runs componentize-py on sandbox/guest, so the wheel carries the Code Mode
# guest component. Stage 2 installs that wheel alone (no dev extras, no compiler, no componentize-py), compiles the
# guest for this image's wasmtime (`agenthub sandbox build`) and runs as an unprivileged user.
# docs/deployment.md describes the image, its volumes and its settings.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
COPY pyproject.toml setup.py README.md ./
COPY hub ./hub
COPY connectors ./connectors
COPY llm ./llm
COPY sandbox ./sandbox
COPY http1 ./http1
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    AGENTHUB_CONFIG=/etc/agenthub/agenthub.toml \
    AGENTHUB_CACHE_DIR=/var/cache/agenthub \
    AGENTHUB_HEALTHCHECK_URL=http://127.0.0.1:8787/healthz
RUN groupadd --system --gid 10001 agenthub \
    && useradd --system --no-log-init --uid 10001 --gid agenthub --home-dir /var/lib/agenthub --create-home \
       --shell /usr/sbin/nologin agenthub \
    && mkdir -p /var/cache/agenthub /etc/agenthub \
    && chown agenthub:agenthub /var/cache/agenthub
COPY --from=build /dist/ /tmp/dist/
# The hub serves under -OO (hub/runtime/memory.py): compile that bytecode now, as the site-packages are read-only
# for the user the hub runs as.
RUN pip install --no-cache-dir /tmp/dist/agenthub-*.whl \
    && rm -rf /tmp/dist \
    && python -m compileall -q -o 0 -o 2 "$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
COPY --chown=root:root deploy/docker/agenthub.toml /etc/agenthub/agenthub.toml
USER 10001:10001
WORKDIR /var/lib/agenthub
# The compiled guest goes to $AGENTHUB_CACHE_DIR, so the first Code Mode run does not compile it.
RUN agenthub sandbox build
EXPOSE 8787
VOLUME ["/var/lib/agenthub"]
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; r = urllib.request.urlopen(os.environ['AGENTHUB_HEALTHCHECK_URL'], timeout=4); sys.exit(r.status != 200)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["agenthub"]
CMD ["serve", "--listen", "0.0.0.0:8787"]
