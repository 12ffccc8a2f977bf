"""The one module that talks to an image registry's HTTP API v2 (catalog, tags, manifests).

A registry is named the way Docker names it: `host[:port][/path-prefix]`, e.g. `127.0.0.1:5000`
or `registry.example.org/isletnet`. Loopback registries are spoken to over plain HTTP (as Docker
Engine does); others over HTTPS unless an explicit `http://`/`https://` scheme is given.
Every failure becomes a `RegistryError` whose message says which registry and what to do.

Authentication works as with `docker login`: a registry that answers 401 with
`WWW-Authenticate: Basic ...` gets the user and password (HTTP basic auth); one that answers
`WWW-Authenticate: Bearer realm=...,service=...,scope=...` (Docker's token flow) gets them sent
to the realm, which issues a bearer token for that scope. Credentials are the site's
`registry_username` (or $ISLETOPS_REGISTRY_USERNAME) with $ISLETOPS_REGISTRY_PASSWORD; the caller
passes them explicitly to each `RegistryClient` and `DockerEngine` (no process-wide map), for the
site's registry host only. The password is never printed, logged or stored.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

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
_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]*))')
PAGE_SIZE = 100
USERNAME_ENV_VAR = "ISLETOPS_REGISTRY_USERNAME"
PASSWORD_ENV_VAR = "ISLETOPS_REGISTRY_PASSWORD"  # noqa: S105 - the name of the variable, not a password  # nosec B105


@dataclass(frozen=True)
class RegistryCredentials:
    """A registry user and password; the password stays out of repr() and so out of logs."""

    username: str
    password: str = field(repr=False)

    def basic_authorization(self) -> str:
        """The `Authorization` header value for HTTP basic auth."""
        pair = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")


def credentials_from_env(username: str = "", environ: Mapping[str, str] | None = None) -> RegistryCredentials | None:
    """The credentials the site gives: `username` (the config's `registry_username`, else
    $ISLETOPS_REGISTRY_USERNAME) with $ISLETOPS_REGISTRY_PASSWORD; None when neither is set."""
    env = os.environ if environ is None else environ
    username = username or env.get(USERNAME_ENV_VAR, "")
    password = env.get(PASSWORD_ENV_VAR, "")
    if not username and not password:
        return None
    if not password:
        raise RegistryError(
            f"A registry user ({username}) is configured but ${PASSWORD_ENV_VAR} is empty.",
            f"Export the password in ${PASSWORD_ENV_VAR} (it is never read from a file we write).",
        )
    if not username:
        raise RegistryError(
            f"${PASSWORD_ENV_VAR} is set but no registry user is configured.",
            f"Set 'registry_username:' in the site config or ${USERNAME_ENV_VAR}.",
        )
    return RegistryCredentials(username, password)


def credentials_for_registry(
    home: str, registry: str, credentials: RegistryCredentials | None
) -> RegistryCredentials | None:
    """The site's `credentials` (for its registry `home`) if `registry` is on the same host, else
    None: a password is never handed to another host named by --registry."""
    if credentials is None or not home:
        return credentials
    return credentials if RegistryAddress.parse(home).host == RegistryAddress.parse(registry).host else None


def refused_credentials(registry: str, username: str) -> RegistryError:
    """The one sentence for a wrong user or password (used for API reads and `docker login`)."""
    return RegistryError(
        f"Registry {registry} refused the credentials for user {username}.",
        f"Check 'registry_username' in the site config and the password in ${PASSWORD_ENV_VAR}; "
        "nothing was changed.",
    )


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="https://a/token",service="reg",scope="repository:x:pull"` ->
    (`bearer`, {realm, service, scope}); ("", {}) for an empty header."""
    scheme, _, rest = (header or "").strip().partition(" ")
    params = {key.lower(): quoted or bare for key, quoted, bare in _CHALLENGE_PARAM.findall(rest)}
    return scheme.lower(), params


@dataclass(frozen=True)
class RegistryAddress:
    """Where a registry is: base URL of its API and the repository path prefix (may be empty)."""

    name: str  # as the user wrote it, without scheme: used in image references
    base_url: str  # scheme://host[:port]
    prefix: str  # path before `isletnet-<component>`, e.g. `team`

    @property
    def host(self) -> str:
        """`host[:port]`: what credentials are kept for (as `docker login HOST` does)."""
        return urlsplit(self.base_url).netloc

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
    """Reads a registry: which repositories and tags exist, and whether a manifest exists.

    `credentials` (None: anonymous) are sent only to this registry.
    """

    def __init__(
        self,
        registry: str,
        timeout_s: float = 10.0,
        session: requests.Session | None = None,
        credentials: RegistryCredentials | None = None,
    ) -> None:
        self.address = RegistryAddress.parse(registry)
        self.timeout_s = timeout_s
        self.session = session or requests.Session()
        self.credentials = credentials
        self._authorization = ""  # the Authorization header that worked last (basic or bearer)

    @property
    def name(self) -> str:
        return self.address.name

    def _send(self, method: str, url: str, headers: dict[str, str] | None = None, **kwargs) -> requests.Response:
        headers = dict(headers or {})
        if self._authorization:
            headers["Authorization"] = self._authorization
        try:
            return self.session.request(method, url, timeout=self.timeout_s, headers=headers, **kwargs)
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

    def _request(self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs) -> requests.Response:
        url = path if path.startswith("http") else urljoin(self.address.base_url + "/", path.lstrip("/"))
        response = self._send(method, url, headers, **kwargs)
        if response.status_code == 401:
            # The registry says how to authenticate; a bearer token is per scope (repository), so
            # a token that worked for one repository gets a 401 and a new challenge for the next.
            scheme, params = parse_challenge(response.headers.get("WWW-Authenticate", ""))
            authorization = self._authorize(scheme, params)
            if authorization:
                self._authorization = authorization
                response = self._send(method, url, headers, **kwargs)
                # Basic auth has no other reason to fail; a token can be valid yet not grant
                # this repository, which the message below says.
                if response.status_code == 401 and scheme == "basic" and self.credentials is not None:
                    raise refused_credentials(self.name, self.credentials.username)
        if response.status_code in (401, 403):
            who = f" user {self.credentials.username}" if self.credentials else " anonymous requests"
            raise RegistryError(
                f"Registry {self.name} refused access ({response.status_code} "
                f"{'Unauthorized' if response.status_code == 401 else 'Forbidden'}) to{who}.",
                f"Set 'registry_username:' in the site config and export ${PASSWORD_ENV_VAR}, "
                "or use a registry that allows this host."
                if self.credentials is None
                else "Ask the registry's owner for read access for this user.",
            )
        return response

    def _authorize(self, scheme: str, params: dict[str, str]) -> str:
        """The Authorization header that answers a 401 challenge ("" when we have none)."""
        if scheme == "basic":
            return self.credentials.basic_authorization() if self.credentials else ""
        if scheme == "bearer" and params.get("realm"):
            token = self._token(params)
            return f"Bearer {token}" if token else ""
        return ""

    def _token(self, params: dict[str, str]) -> str:
        """A bearer token from the challenge's realm (Docker's token flow), asked for with the
        credentials (basic auth) or anonymously without; "" when an anonymous request is refused."""
        realm = params["realm"]
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise RegistryError(f"Registry {self.name} named a token service that is not a URL ({realm}).")
        if self.credentials and parts.scheme == "http" and not parts.netloc.startswith(_LOOPBACK_HOSTS):
            raise RegistryError(
                f"Registry {self.name} asks for the password to be sent over plain HTTP to {parts.netloc}.",
                "Refused; the token service must use HTTPS (or run on this host).",
            )
        query = {key: params[key] for key in ("service", "scope") if params.get(key)}
        auth_header = {"Authorization": self.credentials.basic_authorization()} if self.credentials else {}
        try:
            response = self.session.get(realm, params=query, headers=auth_header, timeout=self.timeout_s)
        except (requests.ConnectionError, requests.Timeout):
            raise RegistryError(
                f"The token service of registry {self.name} ({parts.netloc}) is unreachable.",
                "Check that the registry's auth service runs.",
            ) from None
        if response.status_code in (401, 403):
            if self.credentials is None:
                return ""
            raise refused_credentials(self.name, self.credentials.username)
        if response.status_code != 200:
            raise RegistryError(
                f"The token service of registry {self.name} answered {response.status_code}.",
                "Check the registry's auth service logs.",
            )
        try:
            body = response.json()
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"The token service of registry {self.name} sent no token.")
        return token

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

    def manifest_digest(self, repository: str, tag: str) -> str:
        """The manifest's digest (`sha256:...`), what a Swarm task pins its image to; "" if absent."""
        response = self._request("HEAD", f"/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT})
        if response.status_code == 404:
            return ""
        self._check(response, f"looking up {repository}:{tag}")
        return response.headers.get("Docker-Content-Digest", "")

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

    def pull_size(self, component: str, tag: str) -> int:
        """Compressed bytes a pull of `component` at `tag` downloads (its manifest's layers)."""
        return self.manifest_size(self.address.repository(component), tag)

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
