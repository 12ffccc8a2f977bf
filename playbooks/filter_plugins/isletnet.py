"""Filters that let the provisioning playbook use isletops' own logic on the controller, so the
daemon.json merge, the nginx site and the site config have one implementation each
(isletops.daemon_json, isletops.nginx, isletops.config). Errors come back as a value
(`error`) rather than an exception, so the playbook can fail with our one-sentence message."""

from __future__ import annotations

import json
from typing import Any

import yaml

from isletops.config import parse_config
from isletops.daemon_json import merge_daemon_json_text, settings_from_variables
from isletops.errors import IsletOpsError
from isletops.nginx import SELF_SIGNED_DIR, letsencrypt_paths, render_site, site_from_variables


def isletnet_daemon_json(current_text: str | None, variables: dict[str, Any], path: str) -> dict[str, Any]:
    """Merged daemon.json text for the host: `{text, changed, changed_keys, error}`."""
    try:
        result = merge_daemon_json_text(current_text, settings_from_variables(dict(variables)), path)
    except IsletOpsError as error:
        return {"text": current_text or "", "changed": False, "changed_keys": [], "error": str(error)}
    return {"text": result.text, "changed": result.changed, "changed_keys": list(result.changed_keys), "error": ""}


def isletnet_nginx_site(variables: dict[str, Any], use_letsencrypt: bool = False) -> dict[str, Any]:
    """The rendered site plus what the playbook needs to know about it."""
    wanted = {key: variables[key] for key in variables if str(key).startswith("nginx_")}
    try:
        site = site_from_variables(wanted)
        if use_letsencrypt and site.is_public:
            certificate, key = letsencrypt_paths(site.server_name)
            wanted.update({"nginx_ssl_certificate": certificate, "nginx_ssl_certificate_key": key})
            site = site_from_variables(wanted)
        text = render_site(site)
    except IsletOpsError as error:
        return {"error": str(error)}
    return {
        "error": "",
        "text": text,
        "server_name": site.server_name,
        "is_public": site.is_public,
        "acme_webroot": site.acme_webroot,
        "ssl_certificate": site.ssl_certificate,
        "ssl_certificate_key": site.ssl_certificate_key,
        # The playbook's own self-signed certificate (renewed by it), not one the inventory names.
        "self_signed": site.ssl_certificate.startswith(f"{SELF_SIGNED_DIR}/"),
        "letsencrypt_certificate": letsencrypt_paths(site.server_name)[0] if site.is_public else "",
    }


def isletnet_site_config(
    instance: str, home: str, mail: dict[str, Any], monitoring: dict[str, Any], settings: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The instance's isletops.yml (mail, monitoring, instance settings), checked by the loader that reads it."""
    document: dict[str, Any] = {
        "instances_root": home,
        "default_instance": instance,
        "instances": {instance: dict(settings or {})},
    }
    if mail:
        document["mail"] = dict(mail)
    if monitoring:
        document["monitoring"] = dict(monitoring)
    # Plain types: ansible hands over its own str/dict subclasses, which yaml.safe_dump refuses.
    document = json.loads(json.dumps(document))
    try:
        parse_config(document)
    except IsletOpsError as error:
        return {"error": f"isletops_mail, isletops_monitoring or isletnet_instance_settings: {error}", "text": ""}
    header = "# Site config of this instance, written by the provisioning playbook from the inventory.\n"
    return {"error": "", "text": header + yaml.safe_dump(document, sort_keys=False, default_flow_style=False)}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "isletnet_daemon_json": isletnet_daemon_json,
            "isletnet_nginx_site": isletnet_nginx_site,
            "isletnet_site_config": isletnet_site_config,
        }
