"""`make airflow-ui`: the Airflow UI (airflow standalone) on the demo settings.

Uses the same environment as `make demo` (AIRFLOW_HOME under POEM_HOME, SQLite metadata,
the repository's dags/), so the demo's DAG runs and task logs are visible in the UI.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from poem_registry.orchestration.init import airflow_env
from poem_registry.settings import load_settings


def main() -> int:
    settings = load_settings(demo=True)
    settings.ensure_dirs()
    env = {**os.environ, **airflow_env(settings)}
    airflow = shutil.which("airflow") or str(Path(sys.executable).with_name("airflow"))
    env["PATH"] = f"{Path(airflow).parent}{os.pathsep}{env.get('PATH', '')}"  # standalone re-invokes `airflow`
    print(f"Airflow UI on http://localhost:8080 (AIRFLOW_HOME={env['AIRFLOW_HOME']}); the admin password is "
          f"printed below and stored in {env['AIRFLOW_HOME']}/simple_auth_manager_passwords.json.generated")
    os.execvpe(airflow, [airflow, "standalone"], env)
    return 0  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
