"""Contacts: the register of organisations, people and premises; staff users and tokens."""
