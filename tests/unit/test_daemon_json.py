"""The daemon.json merge: our keys set, every other key kept, unchanged files left byte for byte."""

from __future__ import annotations

import json

import pytest

from isletops.daemon_json import (
    DaemonJsonError,
    DaemonSettings,
    merge_daemon_json_text,
    settings_from_variables,
)

EXISTING = json.dumps(
    {"registry-mirrors": ["https://mirror.hospital.lan"], "insecure-registries": ["10.1.2.3:5000"], "debug": False},
    indent=4,
)


def merged(text: str | None, **settings) -> dict:
    return json.loads(merge_daemon_json_text(text, DaemonSettings(**settings)).text)


def test_missing_file_gets_all_our_settings() -> None:
    result = merge_daemon_json_text(None, DaemonSettings(data_root="/srv/docker"))
    assert result.changed
    assert json.loads(result.text) == {
        "data-root": "/srv/docker",
        "default-address-pools": [{"base": "172.30.0.0/16", "size": 24}],
        "log-driver": "json-file",
        "log-opts": {"max-size": "10m", "max-file": "3"},
    }
    assert result.text.endswith("\n")


def test_unknown_keys_are_kept_with_their_values() -> None:
    result = merged(EXISTING)
    assert result["registry-mirrors"] == ["https://mirror.hospital.lan"]
    assert result["insecure-registries"] == ["10.1.2.3:5000"]
    assert result["debug"] is False
    assert result["data-root"] == "/home/docker"


def test_second_merge_is_unchanged_and_byte_identical() -> None:
    first = merge_daemon_json_text(EXISTING, DaemonSettings())
    second = merge_daemon_json_text(first.text, DaemonSettings())
    assert not second.changed
    assert second.text == first.text
    assert second.changed_keys == ()


def test_hand_formatted_file_with_our_settings_is_not_rewritten() -> None:
    text = (
        '{"log-opts": {"max-file": "3", "max-size": "10m"}, "log-driver": "json-file",\n'
        ' "default-address-pools": [{"size": 24, "base": "172.30.0.0/16"}], "data-root": "/home/docker"}'
    )
    result = merge_daemon_json_text(text, DaemonSettings())
    assert not result.changed
    assert result.text == text


def test_changed_keys_name_only_what_differs() -> None:
    first = merge_daemon_json_text(EXISTING, DaemonSettings()).text
    result = merge_daemon_json_text(first, DaemonSettings(data_root="/data/docker"))
    assert result.changed
    assert result.changed_keys == ("data-root",)


def test_gpu_adds_nvidia_default_runtime_and_keeps_other_runtimes() -> None:
    text = json.dumps({"runtimes": {"runsc": {"path": "/usr/bin/runsc"}}})
    result = merged(text, gpu=True)
    assert result["default-runtime"] == "nvidia"
    assert result["runtimes"] == {
        "runsc": {"path": "/usr/bin/runsc"},
        "nvidia": {"path": "nvidia-container-runtime", "args": []},
    }


def test_without_gpu_no_runtime_is_added_and_an_existing_one_is_kept() -> None:
    assert "default-runtime" not in merged(None)
    assert "runtimes" not in merged(None)
    existing = json.dumps({"default-runtime": "nvidia", "runtimes": {"nvidia": {"path": "/opt/nv"}}})
    result = merged(existing, gpu=False)
    assert result["default-runtime"] == "nvidia"
    assert result["runtimes"] == {"nvidia": {"path": "/opt/nv"}}


def test_empty_data_root_leaves_the_existing_one() -> None:
    assert merged(json.dumps({"data-root": "/var/lib/docker"}), data_root="")["data-root"] == "/var/lib/docker"
    assert "data-root" not in merged(None, data_root="")


def test_extra_json_file_log_opts_are_kept() -> None:
    text = json.dumps({"log-driver": "json-file", "log-opts": {"compress": "true", "max-size": "100m"}})
    assert merged(text)["log-opts"] == {"compress": "true", "max-size": "10m", "max-file": "3"}


def test_log_opts_of_another_driver_are_dropped_when_switching_to_json_file() -> None:
    text = json.dumps({"log-driver": "syslog", "log-opts": {"syslog-address": "udp://10.0.0.1:514"}})
    result = merged(text)
    assert result["log-driver"] == "json-file"
    assert result["log-opts"] == {"max-size": "10m", "max-file": "3"}


def test_configured_address_pools_replace_the_default() -> None:
    pools = ({"base": "10.200.0.0/16", "size": 26},)
    assert merged(None, default_address_pools=pools)["default-address-pools"] == [{"base": "10.200.0.0/16", "size": 26}]


def test_empty_file_is_treated_as_no_settings() -> None:
    result = merge_daemon_json_text("  \n", DaemonSettings())
    assert result.changed
    assert json.loads(result.text)["log-driver"] == "json-file"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{"data-root": "/x",}', "is not valid JSON (line 1, column 20"),
        ("[1, 2]", "must hold a JSON object, not a list"),
        ("{'single': 'quotes'}", "is not valid JSON"),
    ],
)
def test_invalid_existing_file_is_one_sentence_error(text: str, fragment: str) -> None:
    with pytest.raises(DaemonJsonError) as caught:
        merge_daemon_json_text(text, DaemonSettings(), path="/etc/docker/daemon.json")
    message = str(caught.value)
    assert message.startswith("/etc/docker/daemon.json ")
    assert fragment in message
    assert "left untouched" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"data_root": "relative/docker"}, "docker_data_root must be an absolute path"),
        ({"default_address_pools": ()}, "at least one pool"),
        ({"default_address_pools": ({"base": "172.30.0.0/16"},)}, "exactly the keys 'base' and 'size'"),
        ({"default_address_pools": ({"base": "172.30.0.1/16", "size": 24},)}, "is not a network"),
        ({"default_address_pools": ({"base": "172.30.0.0/16", "size": 8},)}, "between 16 and 32"),
        ({"log_max_file": 3}, "must be a non-empty string"),
    ],
)
def test_invalid_settings_are_named(settings: dict, fragment: str) -> None:
    with pytest.raises(DaemonJsonError, match=fragment):
        DaemonSettings(**settings)


def test_settings_from_inventory_variables() -> None:
    settings = settings_from_variables(
        {
            "docker_data_root": "/data/docker",
            "docker_address_pools": [{"base": "10.99.0.0/16", "size": 24}],
            "docker_log_max_file": 5,
            "gpu": True,
        }
    )
    assert settings.data_root == "/data/docker"
    assert settings.default_address_pools == ({"base": "10.99.0.0/16", "size": 24},)
    assert settings.log_max_file == "5"
    assert settings.gpu is True
    assert settings_from_variables({}) == DaemonSettings()


def test_settings_from_variables_rejects_a_non_list_of_pools() -> None:
    with pytest.raises(DaemonJsonError, match="must be a list"):
        settings_from_variables({"docker_address_pools": "172.30.0.0/16"})
