"""Static checks of the deployment files (no Docker engine runs the compose here).

The compose file must stay true to the Airflow 3 reference compose (LocalExecutor,
PostgreSQL, one JWT secret shared by every Airflow component) and consistent with what
the package reads: every POEM_* it sets is read somewhere in poem_registry, and every
secret it requires is documented in .env.example.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from poem_registry.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
AIRFLOW_SERVICES = {
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
}
SERVICES = {"postgres", "reports", *AIRFLOW_SERVICES}
SETTINGS_ONLY_FROM_ENV = {"POEM_WAREHOUSE_LOCK_TIMEOUT", "POEM_REGISTRY_NAME", "POEM_SETTINGS"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))  # resolves the <<: merge keys


@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def env_example() -> str:
    return (REPO / ".env.example").read_text(encoding="utf-8")


def _package_source() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "poem_registry").rglob("*.py"))


def test_services(compose):
    assert set(compose["services"]) == SERVICES


def test_locked_environment_can_use_a_postgresql_metadata_database():
    """Airflow 3 derives postgresql+asyncpg from the compose's metadata URL and opens it at start-up."""
    import importlib.util

    assert importlib.util.find_spec("asyncpg") is not None, (
        "asyncpg is missing from the locked environment: every Airflow service of docker-compose.yml "
        "would fail at start-up. Add `asyncpg` (or use `apache-airflow[postgres]`) in pyproject.toml"
    )


def test_images_are_pinned_or_built(compose):
    for name, service in compose["services"].items():
        image = service.get("image")
        assert image or service.get("build"), name
        if image:
            assert ":" in image, f"{name}: image {image} has no tag"
            tag = image.rsplit(":", 1)[1]
            assert tag and tag != "latest", f"{name}: image {image} is not pinned"
            assert re.search(r"\d", tag), f"{name}: tag {tag} is not a version"


def test_healthchecks(compose):
    for name in (
        "postgres",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "reports",
    ):
        assert compose["services"][name].get("healthcheck", {}).get("test"), name
    assert "8974/health" in str(compose["services"]["airflow-scheduler"]["healthcheck"]["test"])
    assert "/api/v2/version" in str(compose["services"]["airflow-apiserver"]["healthcheck"]["test"])


def test_airflow_services_share_executor_database_and_jwt_secret(compose):
    envs = {name: compose["services"][name]["environment"] for name in AIRFLOW_SERVICES}
    for name, env in envs.items():
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor", name
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://"), name
        assert "@postgres:5432/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], name
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false", name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    secrets = {env["AIRFLOW__API_AUTH__JWT_SECRET"] for env in envs.values()}
    assert len(secrets) == 1, "every Airflow component must use the same JWT secret"
    assert secrets.pop().startswith("${AIRFLOW__API_AUTH__JWT_SECRET:?"), "the JWT secret comes from .env"


def test_startup_order(compose):
    services = compose["services"]
    for name in AIRFLOW_SERVICES:
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy", name
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    init = "\n".join(services["airflow-init"]["command"])
    assert init.index("airflow db migrate") < init.index("poem-registry airflow-init")
    assert "AIRFLOW_ADMIN_PASSWORD" in init


def test_every_poem_variable_is_read_by_the_package(compose):
    settings_vars = set(load_settings().as_env()) | SETTINGS_ONLY_FROM_ENV
    source = _package_source()
    for name in AIRFLOW_SERVICES:
        for key in compose["services"][name]["environment"]:
            if key.startswith("POEM_"):
                assert key in settings_vars or f'"{key}"' in source, f"{name} sets {key}, which nothing reads"


def test_runtime_state_is_on_shared_named_volumes(compose):
    volumes = set(compose["volumes"])
    for name in AIRFLOW_SERVICES:
        service = compose["services"][name]
        env = service["environment"]
        mounts = {m.split(":")[1]: m.split(":")[0] for m in service["volumes"]}
        for setting in ("POEM_HOME", "POEM_PUBLISHED"):
            assert mounts.get(env[setting]) in volumes, f"{name}: {setting} is not on a named volume"
        assert env["POEM_WAREHOUSE"].startswith(env["POEM_HOME"] + "/"), "the DuckDB file lives in POEM_HOME"
        assert env["POEM_AIRFLOW_HOME"] == env["AIRFLOW_HOME"]
        assert env["POEM_DEMO"] == "0"
    reports = {m.split(":")[0]: m for m in compose["services"]["reports"]["volumes"]}
    published = compose["services"]["airflow-scheduler"]["environment"]["POEM_PUBLISHED"]
    published_volume = next(
        m.split(":")[0]
        for m in compose["services"]["airflow-scheduler"]["volumes"]
        if m.split(":")[1] == published
    )
    assert reports[published_volume].endswith(":ro"), "the web server serves the editions read-only"
    assert "poem-data" not in reports, "the web server must not see the warehouse"


def test_env_example_documents_every_variable(compose_text, env_example):
    referenced = set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", compose_text))  # $${X} is the container's
    missing = sorted(v for v in referenced if v not in env_example)
    assert not missing, f".env.example does not mention {missing}"
    required = set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+):\?", compose_text))
    for var in required:
        assert re.search(rf"^{var}=", env_example, re.MULTILINE), (
            f"required {var} needs a line in .env.example"
        )
    for var in [*load_settings().as_env(), *SETTINGS_ONLY_FROM_ENV]:
        assert var in env_example, f".env.example does not document the setting {var}"
    # placeholders only: no real-looking secret is committed
    for line in env_example.splitlines():
        if line.startswith(
            (
                "POSTGRES_PASSWORD=",
                "AIRFLOW__CORE__FERNET_KEY=",
                "AIRFLOW__API_AUTH__JWT_SECRET=",
                "AIRFLOW_ADMIN_PASSWORD=",
            )
        ):
            assert line.endswith("="), line
    assert re.search(r"^POEM_PSEUDONYM_KEY=change-me", env_example, re.MULTILINE)


def test_dockerfile_builds_from_the_lock_as_non_root():
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11[.\d]*-slim", text, re.MULTILINE)
    assert "COPY --chown=poem:poem pyproject.toml uv.lock" in text
    assert text.count("uv sync --frozen --no-dev") == 2
    assert re.search(r"^USER poem$", text, re.MULTILINE)
    assert "ghcr.io/astral-sh/uv:" in text and ":latest" not in text
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    for path in (".venv", ".env", "var/", ".git", "deploy/auth/"):
        assert path in ignored, f".dockerignore must exclude {path}"


def test_nginx_limits_site_leads_to_their_site():
    conf = (REPO / "deploy" / "nginx" / "reports.conf").read_text(encoding="utf-8")
    assert "auth_basic_user_file /etc/nginx/auth/quality.htpasswd;" in conf
    assert "auth_basic_user_file /etc/nginx/auth/sites/$site_id.htpasswd;" in conf
    site_location = re.search(
        r"location ~ (\S+) \{\s*auth_basic \"[^\"]*\";\s*auth_basic_user_file "
        r"/etc/nginx/auth/sites/\$site_id",
        conf,
    )
    assert site_location
    pattern = re.compile(site_location.group(1).replace("(?<site_id>", "(?P<site_id>"))
    assert pattern.match("/latest/sites/riverside/index.html")["site_id"] == "riverside"
    assert pattern.match("/editions/2025-Q1__run_1/sites/harbor/")["site_id"] == "harbor"
    assert pattern.match("/sites/valley/")["site_id"] == "valley"
    assert not pattern.match("/latest/system/index.html")
    assert not pattern.match("/latest/sites/../system/")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to hash passwords")
def test_make_htpasswd_writes_per_site_files(tmp_path):
    script = REPO / "deploy" / "make-htpasswd.sh"
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "REPORTS_AUTH_DIR": str(tmp_path / "auth")}

    def run(*args, password=None):
        extra = {"HTPASSWD_PASSWORD": password} if password else {}
        return subprocess.run(
            ["sh", str(script), *args], env={**env, **extra}, capture_output=True, text=True
        )

    assert run("quality", "qa").returncode == 0
    assert run("site", "riverside", "lead", password="s3cret").returncode == 0
    assert run("site", "riverside", "lead", password="n3w").returncode == 0  # replaces, not duplicates
    assert run("site", "../etc", "x").returncode == 2
    auth = tmp_path / "auth"
    lines = (auth / "sites" / "riverside.htpasswd").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lead:$apr1$")
    salt = lines[0].split("$")[2]
    expected = subprocess.run(
        ["openssl", "passwd", "-apr1", "-salt", salt, "n3w"], capture_output=True, text=True
    ).stdout.strip()
    assert lines[0] == f"lead:{expected}"
    assert "lead:" not in (auth / "quality.htpasswd").read_text()
    assert {line.split(":")[0] for line in (auth / "all.htpasswd").read_text().splitlines()} == {"qa", "lead"}
    assert run("remove", "lead").returncode == 0
    assert (auth / "sites" / "riverside.htpasswd").read_text() == ""


def test_readme_deployment_section_names_the_services():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(
        r"^##+ [^\n]*deploy[^\n]*\n(.*?)(?=^## |\Z)", readme, re.IGNORECASE | re.MULTILINE | re.DOTALL
    )
    if not match:
        pytest.skip("README.md has no deployment section yet (the lead writes it)")
    section = match.group(1)
    missing = sorted(s for s in SERVICES if s not in section)
    assert not missing, f"the README deployment section does not mention {missing}"
