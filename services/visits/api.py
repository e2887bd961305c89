"""Visits' routes: schema in, one use case, object out."""

from __future__ import annotations

from shared.api import Blueprint

BLUEPRINTS: tuple[Blueprint, ...] = ()
