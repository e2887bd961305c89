"""What the JSON log lines hold."""

from __future__ import annotations

import json
import logging

import pytest

from shared.logs import configure_logging


def test_a_celery_task_line_leaves_out_the_tasks_arguments(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Celery hands each task line its arguments as ``data`` (an event's envelope: a
    person's name, email, phone; a sign-up's IP): the JSON line would write them out, and
    keep them after the person's data is erased."""
    root = logging.getLogger()
    level = root.level
    configure_logging("contacts")
    try:
        context = {
            "id": "7f0c",
            "name": "newsletter.handle_event",
            "return_value": "True",
            "runtime": 0.01,
            "args": "[{'data': {'email': 'anna.protokoll@beispiel.example'}}]",
            "kwargs": "{'name': 'Anna Protokoll'}",
        }
        logging.getLogger("celery.app.trace").info(
            "Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s",
            context,
            extra={"data": context},
        )
    finally:
        for handler in [h for h in root.handlers if getattr(h, "_quartier", False)]:
            root.removeHandler(handler)
        root.setLevel(level)
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["message"] == "Task newsletter.handle_event[7f0c] succeeded in 0.01s: True"
    assert line["data"] == {
        "id": "7f0c",
        "name": "newsletter.handle_event",
        "return_value": "True",
        "runtime": 0.01,
    }
    assert "protokoll" not in json.dumps(line).lower()
