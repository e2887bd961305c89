"""Celery wiring: the app context in tasks, one queue per service, the request id handed on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, current_app

from shared.celery_app import celery_config, get_celery
from shared.logs import request_id_var
from shared.settings import SERVICES, Settings
from shared.testing import wait_until


def test_every_task_runs_on_its_services_queue_with_late_acks() -> None:
    config = celery_config("visits", "redis://127.0.0.1:1/0")
    assert config["task_acks_late"] and config["task_reject_on_worker_lost"]
    assert config["worker_prefetch_multiplier"] == 1
    for service in SERVICES:
        assert config["task_routes"][f"{service}.*"] == {"queue": service}


def test_task_runs_in_the_app_context_and_sees_the_callers_request_id(
    make_settings: Callable[..., Settings],
) -> None:
    from celery.contrib.testing.worker import start_worker

    from services.visits.app import create_app

    app: Flask = create_app(make_settings("visits"))
    celery = get_celery(app)
    seen: list[Any] = []

    @celery.task(name="visits.test_probe", shared=False)
    def probe() -> None:
        seen.append((current_app.name, request_id_var.get()))

    with start_worker(
        celery, pool="threads", perform_ping_check=False, queues=["visits"], loglevel="WARNING"
    ):
        token = request_id_var.set("rid-of-the-request")
        try:
            probe.delay()
        finally:
            request_id_var.reset(token)
        wait_until(lambda: seen)
    assert seen == [("services.visits", "rid-of-the-request")]
