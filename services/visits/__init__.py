"""Visits: outreach visits and follow-ups; trainings with registrations and calendar files."""
