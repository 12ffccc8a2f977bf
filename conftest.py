"""Shared test fixtures. Each outside system has its own fixture module under tests/fixtures/
(registered here, so every test folder, services/*/tests included, can use them); unit tests
need none of them and stay fast."""

pytest_plugins = [
    "tests.fixtures.servers",
    "tests.fixtures.stack",
    "tests.fixtures.registry",
    "tests.fixtures.mail",
    "tests.fixtures.provision",
    "tests.fixtures.kube_api",
    "tests.fixtures.swarm",
    "tests.fixtures.timing",
]
