import pytest

from isletops.errors import RegistryError
from isletops.registry import RegistryAddress


@pytest.mark.parametrize(
    ("text", "base_url", "prefix", "repo"),
    [
        ("127.0.0.1:5000", "http://127.0.0.1:5000", "", "isletnet-backend"),
        ("localhost:5000/team", "http://localhost:5000", "team", "team/isletnet-backend"),
        ("registry.example.org", "https://registry.example.org", "", "isletnet-backend"),
        ("http://registry.lan:5000/", "http://registry.lan:5000", "", "isletnet-backend"),
    ],
)
def test_addresses(text, base_url, prefix, repo):
    address = RegistryAddress.parse(text)
    assert (address.base_url, address.prefix, address.repository("backend")) == (base_url, prefix, repo)
    assert "://" not in address.name


@pytest.mark.parametrize("bad", ["", "ftp://x", "user@host:5000", "/nohost"])
def test_bad_addresses_are_refused_with_a_sentence(bad):
    with pytest.raises(RegistryError) as excinfo:
        RegistryAddress.parse(bad)
    assert str(excinfo.value).endswith(".")
