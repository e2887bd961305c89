"""Celery entry point: ``celery -A services.newsletter.worker:celery_app worker -Q newsletter``."""

from services.newsletter.app import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
