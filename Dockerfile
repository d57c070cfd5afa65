# The token provisioning web console, API and worker in one image.
#   docker build -t token-provisioning .
# The same image runs the web server (default command) and the worker
# (`provisioning worker`); see docker-compose.yml for a complete set-up.

# -- front-end bundles (BPMN viewer and modeler, DMN editor, htmx) ----------
FROM node:20-bookworm-slim AS frontend
WORKDIR /src/web/frontend
COPY web/frontend/package.json web/frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/frontend/ ./
RUN mkdir -p ../static/vendor && npm run build

# -- the application -------------------------------------------------------
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    INSTANCE_PATH=/var/lib/provisioning \
    LOG_FORMAT=json \
    PORT=8000 \
    WEB_CONCURRENCY=4

RUN useradd --system --create-home --home-dir /app provisioning
WORKDIR /app

COPY pyproject.toml README.md ./
COPY engine/ engine/
COPY web/ web/
COPY --from=frontend /src/web/static/vendor/ web/static/vendor/
COPY bpmn/ bpmn/
RUN pip install . \
    && mkdir -p "$INSTANCE_PATH" /tmp/prometheus \
    && chown provisioning "$INSTANCE_PATH" /tmp/prometheus

USER provisioning
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD python -c "import urllib.request,os; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['PORT'], timeout=4)"

# Upgrade the schema first, then serve with gunicorn (engine/serve.py);
# LOG_FORMAT=json makes the application log JSON lines.
CMD ["sh", "-c", "provisioning db upgrade && exec provisioning serve --host 0.0.0.0 --port ${PORT} --workers ${WEB_CONCURRENCY}"]
