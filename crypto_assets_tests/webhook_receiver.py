"""A local HTTP endpoint standing in for a Slack incoming webhook, for the alert tests."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that records the JSON bodies POSTed to it and answers the
    n-th POST with the n-th of ``statuses`` (the last one for every POST after)."""

    def __init__(self, *statuses: int):
        self.bodies: list[dict] = []  # the bodies it accepted
        self.refused = 0
        answers = list(statuses or (200,))
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                status = answers.pop(0) if len(answers) > 1 else answers[0]
                if status < 300:
                    receiver.bodies.append(body)
                else:
                    receiver.refused += 1
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status < 300 else b"invalid_token")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/XXXX"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def texts(self) -> list[str]:
        """The notification text of every message received, in order."""
        return [body["text"] for body in self.bodies]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def posted_text(body: dict) -> str:
    """A whole message as one string, to look for what it names (or must not)."""
    return json.dumps(body, ensure_ascii=False)


def evaluate_run_failure_alert(instance, result, webhook) -> None:
    """The run-failure sensor over ``result`` (a failed ``materialize`` in ``instance``), posting to ``webhook``."""
    from dagster import build_run_status_sensor_context

    from crypto_assets.alerts import run_failure_alert

    context = build_run_status_sensor_context(
        sensor_name=run_failure_alert.name,
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"alert_webhook": webhook},
    ).for_run_failure()
    run_failure_alert(context)
