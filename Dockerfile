# POEM Registry: the pipeline and Airflow 3 in one image, built from the locked environment.
# Used by docker-compose.yml for every Airflow service (api-server, scheduler, dag-processor,
# triggerer, init). Build: docker compose build
FROM python:3.11.13-slim-bookworm

# uv, pinned, copied from its official image (no curl | sh).
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /uvx /usr/local/bin/

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/poem/.venv \
    PATH=/opt/poem/.venv/bin:$PATH \
    AIRFLOW_HOME=/opt/airflow \
    POEM_HOME=/var/lib/poem

# One unprivileged user (uid 50000 like the official Airflow image). The runtime folders
# exist in the image with this owner, so new named volumes mounted there inherit it.
RUN groupadd --gid 50000 poem \
 && useradd --uid 50000 --gid poem --home-dir /opt/airflow --no-create-home --shell /bin/bash poem \
 && mkdir -p /opt/poem /opt/airflow/logs /opt/airflow/auth /var/lib/poem /srv/poem/published \
 && chown -R poem:poem /opt/poem /opt/airflow /var/lib/poem /srv/poem

WORKDIR /opt/poem
USER poem

# Dependencies first (cached until pyproject.toml or uv.lock change): exactly the lock, no dev tools.
COPY --chown=poem:poem pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project

# Then the project itself (dags/, sites/, dbt_project/, expectations/, reports/ ...).
COPY --chown=poem:poem . .
RUN uv sync --frozen --no-dev

CMD ["airflow", "version"]
