# The service as one image, running the Procfile's processes:
#   web (the default command):  docker run -p 8000:8000 -e DATABASE_URL=... IMAGE
#   release, once per deploy:   docker run --rm -e DATABASE_URL=... IMAGE flask --app api db upgrade
# Run the release to completion before the web containers of a new image start, as a platform
# does with the Procfile's release line; compose.yaml shows both, with PostgreSQL and Redis.

# Any Debian-based image with Python 3.11+ and its venv module. A locally built one can stand in
# where the registry is out of reach (tests/test_container.py builds one from Debian's packages).
ARG BASE=python:3.11-slim
FROM ${BASE}

# Log lines reach `docker logs` as they are written, not when a buffer fills; the code is
# read-only to the app's user, so Python would only fail to write .pyc files beside it; pip
# installs the pins it is given and need not ask PyPI about its own upgrades.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The user the service runs as: not root, no login shell, no home; it owns only instance/.
RUN groupadd --system --gid 10001 app \
    && useradd --system --no-log-init --uid 10001 --gid app --no-create-home \
        --shell /usr/sbin/nologin app

# Everything lives here; api/__init__.py finds templates/, static/ and migrations/ beside api/.
WORKDIR /app

# The pins alone first, so that a change to the code reuses the installed dependencies' layer.
COPY requirements.txt ./

# The venv's python, flask and pip come first on the PATH: for the pip below, for CMD, and for
# `docker run IMAGE flask ...`.
ENV PATH=/opt/venv/bin:$PATH

# A venv of the base's own python3, so that neither the base's pip nor its packages matter;
# once it exists, `python` is the venv's.
RUN python3 -m venv /opt/venv \
    && python -m pip install --no-cache-dir --requirement requirements.txt

# The code, owned by root so the service cannot change it; .dockerignore sends nothing else.
COPY api/ api/
COPY migrations/ migrations/
COPY templates/ templates/
COPY static/ static/

# The one writable folder: the default SQLite file when DATABASE_URL is unset (mount a volume
# here to keep it); a PostgreSQL deploy writes nothing to the container's disk.
RUN install --directory --owner app --group app /app/instance

# By number, so that a runtime can tell it is not root without the image's /etc/passwd
# (Kubernetes' runAsNonRoot refuses a name).
USER 10001:10001

# A container's port is published from its own network interface, never from its loopback.
ENV HOST=0.0.0.0

# The default PORT (api/config.py); set PORT to listen on another.
EXPOSE 8000

# /healthz answers 200 while the database takes a write, else 503 (README, "Using it"). The
# slim base has no curl: Python's urllib fails on anything but a 2xx, and so does the check.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]

# The Procfile's web line: granian on HOST:PORT, WEB_CONCURRENCY workers, graceful on SIGTERM.
CMD ["python", "-m", "api.web"]
