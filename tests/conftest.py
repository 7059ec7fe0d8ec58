"""Shared pytest fixtures. Fixture modules register themselves here."""

pytest_plugins: list[str] = []
