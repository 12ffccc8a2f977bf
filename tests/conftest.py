"""Shared test fixtures. Integration fixtures (Docker images, registry, S3, SMTP) live in
tests/integration/conftest.py so unit tests stay fast."""
