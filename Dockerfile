# syntax=docker/dockerfile:1
# AgriMarket server image. Build: docker build -t agrimarket .
# Run (SQLite in the /data volume): docker run -p 8000:8000 -v agrimarket-data:/data \
#   -e AGRIMARKET_SECRET_KEY=... -e AGRIMARKET_ENCRYPTION_KEYS=... agrimarket
# (`agrimarket generate-keys` prints fresh secrets; set AGRIMARKET_DATABASE_URL for PostgreSQL.)
ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: a virtual environment with the app and its pinned dependencies --------------------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# Dependencies first, in their own layer, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
COPY requirements/constraints.txt requirements/constraints.txt
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -c requirements/constraints.txt -r /tmp/requirements.txt

COPY src ./src
RUN pip install -c requirements/constraints.txt . \
    && agrimarket --help > /dev/null

# --- runtime: the venv and the migrations, run as an unprivileged user ---------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AGRIMARKET_ENV=production \
    AGRIMARKET_DATA_DIR=/data \
    AGRIMARKET_MIGRATIONS_DIR=/app/migrations \
    AGRIMARKET_PORT=8000

RUN groupadd --system --gid 10001 agrimarket \
    && useradd --system --uid 10001 --gid agrimarket --home-dir /app --no-create-home --shell /usr/sbin/nologin agrimarket \
    && mkdir -p /app /data \
    && chown agrimarket:agrimarket /data

# Owned by root: the app user can run the code but not change it.
COPY --from=builder /opt/venv /opt/venv
COPY migrations /app/migrations

WORKDIR /app
USER agrimarket
# Declared after /data is made and owned by the app user: a new volume starts with that ownership.
VOLUME ["/data"]
EXPOSE 8000

# No curl in the slim image; Python's urllib fails (exit 1) on a refused connection, a timeout or a non-2xx answer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('AGRIMARKET_PORT', '8000') + '/healthz', timeout=4)"]

# Migrate first (a no-op at head), then hand PID 1 to the server so it receives the stop signal directly.
CMD ["sh", "-c", "agrimarket db upgrade && exec agrimarket serve --host 0.0.0.0"]
