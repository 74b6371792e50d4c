"""E-mail notifications, received by a tiny SMTP server on 127.0.0.1 (aiosmtpd is not installed)."""

from __future__ import annotations

import socketserver
import threading
from email import message_from_bytes
from types import SimpleNamespace

import pytest

from poem_registry.reports.notify import notify, notify_failure


class _SMTPHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP (RFC 5321) for smtplib: EHLO/HELO, MAIL, RCPT, DATA, QUIT."""

    def handle(self) -> None:
        self.wfile.write(b"220 test ESMTP\r\n")
        mail_from, rcpt = None, []
        while line := self.rfile.readline():
            cmd = line.decode().strip()
            upper = cmd.upper()
            if upper.startswith(("EHLO", "HELO")):
                self.wfile.write(b"250-test\r\n250 OK\r\n")
            elif upper.startswith("MAIL FROM"):
                mail_from = cmd.split(":", 1)[1].strip()
                self.wfile.write(b"250 OK\r\n")
            elif upper.startswith("RCPT TO"):
                rcpt.append(cmd.split(":", 1)[1].strip())
                self.wfile.write(b"250 OK\r\n")
            elif upper == "DATA":
                self.wfile.write(b"354 end with .\r\n")
                data = []
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    data.append(chunk[1:] if chunk.startswith(b"..") else chunk)
                self.server.messages.append({"from": mail_from, "to": rcpt, "data": b"".join(data)})
                self.wfile.write(b"250 queued\r\n")
            elif upper == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 OK\r\n")


@pytest.fixture()
def smtp_server():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SMTPHandler)
    server.messages = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _env(server) -> dict[str, str]:
    return {
        "POEM_SMTP_HOST": "127.0.0.1",
        "POEM_SMTP_PORT": str(server.server_address[1]),
        "POEM_SMTP_FROM": "registry@example.org",
        "POEM_NOTIFY_TO": "lead@example.org, qa@example.org",
    }


SUMMARY = {
    "status": "published",
    "edition": "2026-Q3__r1",
    "period": "2026-Q3",
    "as_of": "2026-09-30",
    "run_id": "r1",
    "index_html": "/srv/published/index.html",
    "system_report": "/srv/published/editions/2026-Q3__r1/system/index.html",
    "edition_path": "/srv/published/editions/2026-Q3__r1",
    "headline": [
        {
            "measure_id": "P1",
            "name": "P1 Technical success",
            "denominator_type": "na",
            "numerator": 357,
            "denominator": 369,
            "rate": 0.96748,
        },
        {
            "measure_id": "P6S",
            "name": "P6S Severe AE",
            "denominator_type": "na",
            "numerator": None,
            "denominator": None,
            "rate": None,
        },
    ],
    "warnings": ["a data-quality warning"],
}


def test_edition_notification_received(smtp_server, settings, monkeypatch):
    monkeypatch.setenv("POEM_REPORTS_URL", "https://reports.example.org/poem")
    assert notify(settings, SUMMARY, env=_env(smtp_server)) is True
    assert len(smtp_server.messages) == 1
    got = smtp_server.messages[0]
    assert got["to"] == ["<lead@example.org>", "<qa@example.org>"]
    msg = message_from_bytes(got["data"])
    assert "2026-Q3__r1" in msg["Subject"]
    body = msg.get_payload(decode=True).decode()
    assert "P1 Technical success: 96.7% (357/369)" in body
    assert "hidden (small numbers)" in body
    assert "https://reports.example.org/poem/editions/2026-Q3__r1/system/index.html" in body


def test_not_configured_is_a_logged_no_op(settings, caplog):
    caplog.set_level("INFO")
    assert notify(settings, SUMMARY, env={}) is False
    assert "notification not sent" in caplog.text


def test_failure_callback(smtp_server):
    ti = SimpleNamespace(
        dag_id="poem_publish", task_id="publish", run_id="manual__1", log_url="http://af/log"
    )
    assert notify_failure(
        {"task_instance": ti, "exception": RuntimeError("disk full")}, env=_env(smtp_server)
    )
    msg = message_from_bytes(smtp_server.messages[0]["data"])
    assert "poem_publish.publish failed" in msg["Subject"]
    assert "disk full" in msg.get_payload(decode=True).decode()


def test_failure_callback_survives_unreachable_server():
    env = {
        "POEM_SMTP_HOST": "127.0.0.1",
        "POEM_SMTP_PORT": "1",
        "POEM_SMTP_FROM": "a@b",
        "POEM_NOTIFY_TO": "c@d",
    }
    assert notify_failure("build failed", env=env) is False
