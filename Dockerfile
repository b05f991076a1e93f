# livehub image: `docker compose up` (see docker-compose.yml and docs/deploy.md), or alone:
#   docker build -t livehub . && docker run -p 8088:8088 -e LIVEHUB_HOOK_SECRET=... livehub

# --- build: install the package and its dependencies into a virtualenv -----------------------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# exactly what `make run` installs: the locked versions, each checked against its hash
COPY requirements/build.txt requirements/runtime.txt ./requirements/
RUN pip install --require-hashes --no-deps -r requirements/build.txt \
    && pip install --require-hashes --no-deps -r requirements/runtime.txt
COPY pyproject.toml setup.cfg README.md ./
COPY livehub ./livehub
# the JavaScript SDK, served at /sdk/livehub-client.js (livehub/api/console.py)
COPY sdk/livehub-client.js ./livehub/static/livehub-client.js
RUN pip install --no-deps --no-build-isolation .

# --- runtime: the virtualenv, a non-root user, nothing else ----------------------------------
FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LIVEHUB_HOST=0.0.0.0 \
    LIVEHUB_PORT=8088 \
    LIVEHUB_DB=data/livehub.db

RUN groupadd --system --gid 10001 livehub \
    && useradd --system --uid 10001 --gid livehub --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin livehub \
    && mkdir -p /app/data /recordings \
    && chown -R livehub:livehub /app /recordings

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
USER livehub:livehub

# SQLite lives here (LIVEHUB_DB is relative to /app). The directory is created and chowned
# above, before VOLUME: a new named volume copies it, so livehub can write to it.
VOLUME ["/app/data"]

EXPOSE 8088

# No curl in the slim image: the standard library does the check (non-zero exit on any error).
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8088/healthz', timeout=4)"]

# Exec form: livehub is PID 1 and gets docker's SIGTERM itself (graceful shutdown, bounded by
# LIVEHUB_SHUTDOWN_TIMEOUT; keep compose's stop_grace_period above it).
CMD ["livehub"]
