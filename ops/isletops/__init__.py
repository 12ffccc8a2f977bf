"""IsletOps: the operations toolkit that builds, releases, deploys, watches and repairs IsletNet."""

__version__ = "0.1.0"
