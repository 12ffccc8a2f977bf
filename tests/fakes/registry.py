"""`FakeRegistry`: an in-memory stand-in for `isletops.registry.RegistryClient`.

It holds repositories, their tags and each manifest's size and answers the client's reads from
them; names, references and the methods built on those reads (`missing_images`, ...) are the
real client's code, so they are exactly what the real client would produce. `reachable=False`
makes every call fail the way an unreachable registry does (a `RegistryError`).
"""

from __future__ import annotations

from collections.abc import Iterable

from isletops.errors import RegistryError
from isletops.registry import RegistryAddress, RegistryClient
from isletops.release import COMPONENTS

DEFAULT_SIZE = 10 * 1024 * 1024


class FakeRegistry:
    """Answers like `RegistryClient`, from `repositories` (repository -> {tag: manifest bytes})."""

    def __init__(self, registry: str = "127.0.0.1:5000", reachable: bool = True) -> None:
        self.address = RegistryAddress.parse(registry)
        self.reachable = reachable
        self.repositories: dict[str, dict[str, int]] = {}
        self.calls: list[str] = []  # method names in call order, for tests that check what was asked

    # -- setting it up -------------------------------------------------------------------------
    def push(self, component: str, tag: str, size: int = DEFAULT_SIZE) -> str:
        """Store one component image of `tag`; returns its reference."""
        self.repositories.setdefault(self.address.repository(component), {})[tag] = size
        return self.image_ref(component, tag)

    def push_release(self, tag: str, components: Iterable[str] = COMPONENTS, size: int = DEFAULT_SIZE) -> None:
        """Store every component image of `tag`."""
        for component in components:
            self.push(component, tag, size)

    # -- the RegistryClient interface ----------------------------------------------------------
    name = RegistryClient.name

    def _answer(self, method: str) -> None:
        self.calls.append(method)
        if not self.reachable:
            raise RegistryError(
                f"Registry {self.name} is unreachable (refused or unreachable).",
                "Check the address ('registry:' in the config or --registry) and that the registry runs.",
            )

    def ping(self) -> None:
        self._answer("ping")

    def catalog(self) -> list[str]:
        self._answer("catalog")
        return sorted(self.repositories)

    def tags(self, repository: str) -> list[str]:
        self._answer("tags")
        return sorted(self.repositories.get(repository, {}))

    def manifest_exists(self, repository: str, tag: str) -> bool:
        self._answer("manifest_exists")
        return tag in self.repositories.get(repository, {})

    def manifest_digest(self, repository: str, tag: str) -> str:
        """A digest per stored size: same size, same image (enough for the fakes' tests)."""
        self._answer("manifest_digest")
        size = self.repositories.get(repository, {}).get(tag)
        return "" if size is None else f"sha256:{size:064x}"

    def manifest_size(self, repository: str, tag: str) -> int:
        self._answer("manifest_size")
        try:
            return self.repositories[repository][tag]
        except KeyError:
            raise RegistryError(f"Registry {self.name} has no image {repository}:{tag}.") from None

    # What the real client derives from the calls above is the real client's own code.
    component_tags = RegistryClient.component_tags
    missing_images = RegistryClient.missing_images
    image_ref = RegistryClient.image_ref
    pull_size = RegistryClient.pull_size
