"""E-mail notifications: a new edition (headline numbers and links) and pipeline failures.

SMTP settings come from the environment so no secret is in a file:
``POEM_SMTP_HOST``, ``POEM_SMTP_PORT`` (25), ``POEM_SMTP_FROM``, ``POEM_NOTIFY_TO``
(comma-separated), optional ``POEM_SMTP_USER`` / ``POEM_SMTP_PASSWORD``,
``POEM_SMTP_TLS`` (STARTTLS: 1/true) or ``POEM_SMTP_SSL`` (implicit TLS), and
``POEM_REPORTS_URL`` (base URL where the published folder is served; file paths
are used otherwise). Without host, sender and recipients nothing is sent and a
log line says so.
"""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage

from poem_registry.settings import Settings

log = logging.getLogger(__name__)


def _truthy(value: str | None) -> bool:
    return str(value or "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    user: str | None = None
    password: str | None = None
    starttls: bool = False
    ssl: bool = False

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> SmtpConfig | None:
        env = dict(os.environ if env is None else env)
        host, sender = env.get("POEM_SMTP_HOST"), env.get("POEM_SMTP_FROM")
        recipients = tuple(a.strip() for a in (env.get("POEM_NOTIFY_TO") or "").split(",") if a.strip())
        if not (host and sender and recipients):
            return None
        return cls(
            host=host,
            port=int(env.get("POEM_SMTP_PORT") or 25),
            sender=sender,
            recipients=recipients,
            user=env.get("POEM_SMTP_USER") or None,
            password=env.get("POEM_SMTP_PASSWORD") or None,
            starttls=_truthy(env.get("POEM_SMTP_TLS")),
            ssl=_truthy(env.get("POEM_SMTP_SSL")),
        )


def _send(config: SmtpConfig, subject: str, body: str) -> None:
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = config.sender
    msg["To"] = ", ".join(config.recipients)
    msg.set_content(body)
    smtp_cls = smtplib.SMTP_SSL if config.ssl else smtplib.SMTP
    kwargs = {"context": ssl.create_default_context()} if config.ssl else {}
    with smtp_cls(config.host, config.port, timeout=30, **kwargs) as smtp:
        if config.starttls and not config.ssl:
            smtp.starttls(context=ssl.create_default_context())
        if config.user:
            smtp.login(config.user, config.password or "")
        smtp.send_message(msg)


def _link(published_dir: str, path: str) -> str:
    """``path`` under the published folder as a URL below ``POEM_REPORTS_URL`` (or the path itself)."""
    base = os.environ.get("POEM_REPORTS_URL")
    if not base or not path:
        return path
    try:
        rel = os.path.relpath(path, published_dir)
    except ValueError:
        return path
    if rel.startswith(".."):
        return path
    return base.rstrip("/") + "/" + rel.replace(os.sep, "/")


def edition_email(settings: Settings, summary: dict) -> tuple[str, str]:
    """Subject and plain-text body for a new edition (no site names, no small counts: headline only)."""
    if summary.get("status") == "blocked":
        subject = f"[{settings.registry_name}] publishing stopped"
        return subject, summary.get("message", "publishing stopped") + (
            f"\nThe latest edition is still {summary.get('latest_edition') or 'none'}.\n"
        )
    subject = f"[{settings.registry_name}] new edition {summary.get('edition')}"
    lines = [
        f"A new edition of the {settings.registry_name} reports is published.",
        "",
        f"Period: {summary.get('period')}   data as of: {summary.get('as_of')}   run: {summary.get('run_id')}",
        "",
        "Headline measures (all sites, all index POEMs to date):",
    ]
    for h in summary.get("headline", []):
        den = f" [{h['denominator_type']}]" if h.get("denominator_type") in ("PP", "ITT") else ""
        if h.get("rate") is None:
            lines.append(f"  {h['name']}{den}: hidden (small numbers)")
        else:
            lines.append(f"  {h['name']}{den}: {100 * h['rate']:.1f}% ({h['numerator']}/{h['denominator']})")
    if summary.get("warnings"):
        lines += ["", "Data-quality warnings:"] + [f"  - {w}" for w in summary["warnings"]]
    published = os.path.dirname(summary.get("index_html") or str(settings.published_dir / "index.html"))
    lines += [
        "",
        "Links:",
        f"  All editions: {_link(published, summary.get('index_html', ''))}",
        f"  System report: {_link(published, summary.get('system_report', ''))}",
        f"  This edition: {_link(published, summary.get('edition_path', ''))}",
    ]
    return subject, "\n".join(lines) + "\n"


def notify(settings: Settings, edition_summary: dict, *, env: dict[str, str] | None = None) -> bool:
    """E-mail the edition summary returned by ``publish_edition``; returns whether a message was sent."""
    config = SmtpConfig.from_env(env)
    if config is None:
        log.info(
            "notification not sent: set POEM_SMTP_HOST, POEM_SMTP_FROM and POEM_NOTIFY_TO to e-mail editions"
        )
        return False
    subject, body = edition_email(settings, edition_summary)
    _send(config, subject, body)
    log.info("notification sent to %s", ", ".join(config.recipients))
    return True


def notify_failure(context: dict | str | None = None, *, env: dict[str, str] | None = None) -> bool:
    """Failure e-mail; usable directly as an Airflow ``on_failure_callback`` (it receives the task context)."""
    config = SmtpConfig.from_env(env)
    if isinstance(context, dict):
        ti = context.get("task_instance") or context.get("ti")
        dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
        task_id = getattr(ti, "task_id", "?")
        run_id = context.get("run_id") or getattr(ti, "run_id", "?")
        error = context.get("exception") or context.get("reason") or "see the task log"
        subject = f"[POEM Registry] {dag_id}.{task_id} failed"
        body = (
            f"Task {task_id} of DAG {dag_id} failed in run {run_id}.\n\nError: {error}\n\n"
            f"Log: {getattr(ti, 'log_url', 'see the Airflow UI')}\n"
            "No new edition was published; the previous edition stays online.\n"
        )
    else:
        subject = "[POEM Registry] pipeline failure"
        body = f"{context or 'A pipeline step failed.'}\nThe previous edition stays online.\n"
    if config is None:
        log.info("failure notification not sent (SMTP not configured): %s", subject)
        return False
    try:
        _send(config, subject, body)
    except (OSError, smtplib.SMTPException) as exc:  # a failing callback must not hide the original failure
        log.error("failure notification could not be sent: %s", exc)
        return False
    return True
