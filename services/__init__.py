"""The Quartier CRM services. Each is a Flask app with its own database and Celery queue."""
