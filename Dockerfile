# 振风超市 service image. Build: docker build -t zhenfeng .   Run: docker run -p 8000:8000 -e ZF_... zhenfeng
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1 \
    ZF_VAR_DIR=/data ZF_HOST=0.0.0.0 ZF_PORT=8000

RUN pip install --no-cache-dir uv \
 && apt-get update \
 && apt-get install -y --no-install-recommends curl fonts-noto-cjk libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --home-dir /home/zhenfeng zhenfeng \
 && mkdir -p /data && chown zhenfeng /data

WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY app ./app
COPY migrations ./migrations
COPY alembic.ini ./
RUN uv sync --frozen --no-dev && chown -R root:root /app

USER zhenfeng
EXPOSE 8000
VOLUME ["/data"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
# Migrations run at every start (idempotent); then the server.
CMD ["sh", "-c", ".venv/bin/zhenfeng migrate && exec .venv/bin/zhenfeng serve"]
