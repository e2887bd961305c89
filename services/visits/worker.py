"""Celery entry point: ``celery -A services.visits.worker:celery_app worker -Q visits``."""

from services.visits.app import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
