"""The one module that talks to an image registry's HTTP API v2 (catalog, tags, manifests).

A registry is named the way Docker names it: `host[:port][/path-prefix]`, e.g. `127.0.0.1:5000`
or `registry.example.org/isletnet`. Loopback registries are spoken to over plain HTTP (as Docker
Engine does); others over HTTPS unless an explicit `http://`/`https://` scheme is given.
Every failure becomes a `RegistryError` whose message says which registry and what to do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urljoin

import requests

from isletops.errors import RegistryError
from isletops.release import COMPONENTS, image_name, image_repository

# Manifests a registry may hold for one tag; HEAD must name them or v2 registries answer 404
# for OCI/list manifests (or convert to schema 1).
MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    )
)
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
_LOOPBACK_HOSTS = ("127.", "localhost", "[::1]")
PAGE_SIZE = 100


@dataclass(frozen=True)
class RegistryAddress:
    """Where a registry is: base URL of its API and the repository path prefix (may be empty)."""

    name: str  # as the user wrote it, without scheme: used in image references
    base_url: str  # scheme://host[:port]
    prefix: str  # path before `isletnet-<component>`, e.g. `team`

    @classmethod
    def parse(cls, registry: str) -> RegistryAddress:
        text = (registry or "").strip().rstrip("/")
        if not text:
            raise RegistryError(
                "No registry is configured.", "Set 'registry:' in the site config or pass --registry HOST:PORT."
            )
        scheme = ""
        if "://" in text:
            scheme, _, text = text.partition("://")
            if scheme not in ("http", "https"):
                raise RegistryError(f"Registry '{registry}' has an unknown scheme '{scheme}'.", "Use http or https.")
        host, _, prefix = text.partition("/")
        if not host or any(c in host for c in " \t@"):
            raise RegistryError(f"'{registry}' is not a registry address.", "Write it as host[:port][/prefix].")
        if not scheme:
            scheme = "http" if host.startswith(_LOOPBACK_HOSTS) else "https"
        return cls(name=text, base_url=f"{scheme}://{host}", prefix=prefix)

    def repository(self, component: str) -> str:
        """The repository path of a component in this registry (`<prefix>/isletnet-<c>`)."""
        return image_repository(component, self.prefix)


class RegistryClient:
    """Reads a registry: which repositories and tags exist, and whether a manifest exists."""

    def __init__(self, registry: str, timeout_s: float = 10.0, session: requests.Session | None = None) -> None:
        self.address = RegistryAddress.parse(registry)
        self.timeout_s = timeout_s
        self.session = session or requests.Session()

    @property
    def name(self) -> str:
        return self.address.name

    def _request(self, method: str, path: str, **kwargs) -> requests.Response:
        url = path if path.startswith("http") else urljoin(self.address.base_url + "/", path.lstrip("/"))
        try:
            response = self.session.request(method, url, timeout=self.timeout_s, **kwargs)
        except requests.exceptions.SSLError:
            raise RegistryError(
                f"Registry {self.name} did not complete a TLS handshake.",
                f"If it serves plain HTTP, write the registry as http://{self.name}.",
            ) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            reason = "timed out" if isinstance(exc, requests.Timeout) else "refused or unreachable"
            raise RegistryError(
                f"Registry {self.name} is unreachable ({reason}).",
                "Check the address ('registry:' in the config or --registry) and that the registry runs.",
            ) from None
        if response.status_code in (401, 403):
            raise RegistryError(
                f"Registry {self.name} refused access ({response.status_code} "
                f"{'Unauthorized' if response.status_code == 401 else 'Forbidden'}).",
                f"Log in with 'docker login {self.name}' or use a registry that allows this host.",
            )
        return response

    def _check(self, response: requests.Response, what: str) -> None:
        if response.status_code >= 400:
            raise RegistryError(
                f"Registry {self.name} answered {response.status_code} when {what}.",
                "Check the registry's own logs.",
            )

    def ping(self) -> None:
        """Raise `RegistryError` unless the address speaks registry API v2."""
        response = self._request("GET", "/v2/")
        if response.status_code != 200:
            raise RegistryError(
                f"{self.name} does not look like a registry (GET /v2/ answered {response.status_code}).",
                "Check the address ('registry:' in the config or --registry).",
            )

    def _paginate(self, path: str, key: str, what: str) -> list[str] | None:
        """All items of a paginated list endpoint, following `Link: <...>; rel="next"`;
        None when the endpoint answers 404 (unknown repository)."""
        items: list[str] = []
        url: str | None = path
        while url:
            response = self._request("GET", url)
            if response.status_code == 404:
                return None
            self._check(response, what)
            try:
                items += list(response.json().get(key) or [])
            except ValueError:
                raise RegistryError(f"Registry {self.name} sent something that is not JSON when {what}.") from None
            match = _LINK_NEXT.search(response.headers.get("Link", ""))
            url = match.group(1) if match else None
        return items

    def catalog(self) -> list[str]:
        """Every repository in the registry."""
        return sorted(self._paginate(f"/v2/_catalog?n={PAGE_SIZE}", "repositories", "listing repositories") or [])

    def tags(self, repository: str) -> list[str]:
        """Tags of `repository` (empty if the repository does not exist yet)."""
        return sorted(
            self._paginate(f"/v2/{repository}/tags/list?n={PAGE_SIZE}", "tags", f"listing tags of {repository}") or []
        )

    def component_tags(self, components: Iterable[str] = COMPONENTS) -> dict[str, list[str]]:
        """Tags per component repository."""
        return {component: self.tags(self.address.repository(component)) for component in components}

    def manifest_exists(self, repository: str, tag: str) -> bool:
        response = self._request("HEAD", f"/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT})
        if response.status_code == 404:
            return False
        self._check(response, f"looking up {repository}:{tag}")
        return True

    def manifest_size(self, repository: str, tag: str) -> int:
        """Compressed bytes of an image's layers and config (0 for a manifest list we cannot size)."""
        response = self._request("GET", f"/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT})
        if response.status_code == 404:
            raise RegistryError(f"Registry {self.name} has no image {repository}:{tag}.")
        self._check(response, f"reading the manifest of {repository}:{tag}")
        try:
            manifest = response.json()
        except ValueError:
            return 0
        layers = manifest.get("layers") or []
        config_size = int((manifest.get("config") or {}).get("size") or 0)
        return sum(int(layer.get("size") or 0) for layer in layers) + config_size

    def missing_images(self, tag: str, components: Iterable[str] = COMPONENTS) -> list[str]:
        """Image references of release `tag` that the registry lacks (empty: all present)."""
        return [
            image_name(component, tag, self.address.name)
            for component in components
            if not self.manifest_exists(self.address.repository(component), tag)
        ]

    def image_ref(self, component: str, tag: str) -> str:
        """The reference Docker uses to pull this component's image from this registry."""
        return image_name(component, tag, self.address.name)
