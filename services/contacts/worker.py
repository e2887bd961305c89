"""Celery entry point: ``celery -A services.contacts.worker:celery_app worker -Q contacts``."""

from services.contacts.app import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
