"""The shared fake registry keeps the real client's interface and naming."""

import inspect

import pytest

from isletops.errors import RegistryError
from isletops.registry import RegistryClient
from isletops.release import COMPONENTS
from tests.fakes.registry import FakeRegistry

TAG = "2026-11-23_01"


def _public(cls: type) -> dict[str, object]:
    return {name: member for name, member in vars(cls).items() if not name.startswith("_")}


def test_the_fake_has_every_public_method_of_the_real_client_with_the_same_parameters():
    real, fake = _public(RegistryClient), _public(FakeRegistry)
    assert set(real) <= set(fake), f"FakeRegistry lacks {sorted(set(real) - set(fake))}"
    for name, member in real.items():
        if callable(member):
            assert inspect.signature(member) == inspect.signature(fake[name]), name


def test_image_references_are_those_of_the_real_client():
    for address in ("127.0.0.1:5000", "registry.example.org/team", "http://registry.lan:5000/"):
        assert FakeRegistry(address).image_ref("backend", TAG) == RegistryClient(address).image_ref("backend", TAG)
        assert FakeRegistry(address).name == RegistryClient(address).name


def test_missing_images_lists_what_was_not_pushed_and_sizes_come_back():
    registry = FakeRegistry()
    registry.push_release(TAG, [c for c in COMPONENTS if c != "shepherd"], size=7)
    assert registry.missing_images(TAG) == [registry.image_ref("shepherd", TAG)]
    assert registry.manifest_size(registry.address.repository("backend"), TAG) == 7
    assert registry.component_tags(["backend", "shepherd"]) == {"backend": [TAG], "shepherd": []}


def test_an_unknown_manifest_and_an_unreachable_registry_are_registry_errors():
    with pytest.raises(RegistryError, match="has no image"):
        FakeRegistry().manifest_size("isletnet-backend", TAG)
    with pytest.raises(RegistryError, match="unreachable"):
        FakeRegistry(reachable=False).missing_images(TAG)
