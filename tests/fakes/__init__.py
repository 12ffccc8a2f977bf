"""Shared in-memory fakes of the toolkit's seams (registry, engine) for unit tests only.

Integration tests use the real parts (tests/fixtures); a fake here implements the public methods
of the class it stands for, with the same signatures (tests/unit/test_fake_registry.py checks that for the registry).
"""
