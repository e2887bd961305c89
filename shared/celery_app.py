"""Celery wiring after the Flask docs: a task class that pushes the app context, one queue
per service, late acknowledgement so that a killed worker's task runs again."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from celery import Celery, Task
from celery.signals import (
    before_task_publish,
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_process_shutdown,
    worker_shutdown,
)
from flask import Flask

from shared.db import get_database
from shared.logs import request_id_var
from shared.settings import SERVICES

EXTENSION_KEY = "celery"


def celery_config(default_queue: str, broker_url: str) -> dict[str, Any]:
    return {
        "broker_url": broker_url,
        "result_backend": None,
        "task_ignore_result": True,
        "task_default_queue": default_queue,
        # Every task is named "<service>.<name>" and runs on that service's queue.
        "task_routes": {f"{name}.*": {"queue": name} for name in SERVICES},
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_serializer": "json",
        "accept_content": ["json"],
        "timezone": "Europe/Berlin",
        "enable_utc": True,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 3,
        "broker_transport_options": {
            # A message whose worker died unacknowledged goes back to the queue after this.
            "visibility_timeout": 300,
            "socket_connect_timeout": 3,
            "socket_timeout": 10,
        },
        "worker_hijack_root_logger": False,
        # Workers report task events for Flower; senders do not, as that would double
        # every publish on the request path.
        "worker_send_task_events": True,
    }


def celery_init_app(app: Flask, service: str, broker_url: str) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.conf.update(celery_config(service, broker_url))
    celery_app.set_default()
    app.extensions[EXTENSION_KEY] = celery_app

    def _after_fork(**_kwargs: Any) -> None:
        get_database(app).after_fork()

    worker_process_init.connect(_after_fork, weak=False)
    _connect_request_id_signals()
    return celery_app


def at_worker_exit(release: Callable[[], None]) -> None:
    """Call ``release`` when a worker process ends: a pool's child, or the worker itself
    (which runs the tasks with the solo and threads pools). Per-process connections are
    closed then rather than left to the exit."""

    def _release(**_kwargs: Any) -> None:
        release()

    worker_process_shutdown.connect(_release, weak=False)
    worker_shutdown.connect(_release, weak=False)


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class WorkerLocal(Generic[K, V]):
    """What a worker process makes on first use (after the fork) and keeps for its tasks,
    one per key: an SMTP connection reused across mails and tasks, an engine. Given
    ``release``, they are released when the process ends (:func:`at_worker_exit`)."""

    def __init__(self, make: Callable[[K], V], release: Callable[[V], None] | None = None):
        self._make = make
        self._release = release
        self._items: dict[K, V] = {}
        self._lock = threading.Lock()
        if release is not None:
            at_worker_exit(self.release)

    def __call__(self, key: K) -> V:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                item = self._items[key] = self._make(key)
            return item

    def release(self) -> None:
        with self._lock:
            items = list(self._items.values())
            self._items.clear()
        if self._release is not None:
            for item in items:
                self._release(item)


def get_celery(app: Flask) -> Celery:
    return app.extensions[EXTENSION_KEY]


def _connect_request_id_signals() -> None:
    before_task_publish.connect(_publish_request_id, weak=False, dispatch_uid="quartier.rid.pub")
    task_prerun.connect(_bind_request_id, weak=False, dispatch_uid="quartier.rid.pre")
    task_postrun.connect(_unbind_request_id, weak=False, dispatch_uid="quartier.rid.post")


def _publish_request_id(headers: dict[str, Any] | None = None, **_kwargs: Any) -> None:
    rid = request_id_var.get()
    if headers is not None and rid:
        headers["request_id"] = rid


def _bind_request_id(task: Task | None = None, **_kwargs: Any) -> None:
    if task is not None:
        request_id_var.set(getattr(task.request, "request_id", None))


def _unbind_request_id(**_kwargs: Any) -> None:
    request_id_var.set(None)


def create_beat_app(broker_url: str, relay_every: float = 5.0) -> Celery:
    """The one scheduler of the system: each service's periodic tasks and outbox relays."""
    beat = Celery("quartier-beat")
    beat.conf.update(celery_config("beat", broker_url))
    schedule: dict[str, Any] = {}
    for name in SERVICES:
        schedule[f"{name}.relay_outbox"] = {
            "task": f"{name}.relay_outbox",
            "schedule": relay_every,
            "options": {"expires": relay_every * 2},
        }
        tasks = importlib.import_module(f"services.{name}.tasks")
        schedule.update(getattr(tasks, "SCHEDULE", {}))
    beat.conf.beat_schedule = schedule
    return beat
