"""`isletops probe` output for Nagios/Icinga: the status line and perfdata (plugin guidelines)."""

import re

import pytest

from isletops.errors import IsletOpsError
from monitors import nagios
from monitors.metrics import Measurement, perfdata, perfdatum
from monitors.result import ProbeResult, Status

# 'label'=value[UOM];[warn];[crit];[min];[max] (trailing empty fields may be dropped)
PERFDATUM = re.compile(r"'[^'=]+'=-?\d+(\.\d+)?(s|ms|us|%|B|KB|MB|TB|c)?(;(-?\d+(\.\d+)?)?){0,4}")


def test_a_ratio_is_shown_as_percent_with_its_thresholds_and_range():
    used = Measurement("disk_used", 0.9234, {"path": "/srv/isletnet"}, warn=0.8, crit=0.9)
    assert perfdatum(used) == "'disk_used /srv/isletnet'=92.34%;80;90;0;100"


@pytest.mark.parametrize(
    ("measurement", "expected"),
    [
        (Measurement("e2e_duration", 12.5, crit=180.0, minimum=0.0), "'e2e_duration'=12.5s;;180;0"),
        (Measurement("disk_free", 2.0 * 2**30, {"path": "/"}, minimum=0.0), "'disk_free /'=2147483648B;;;0"),
        (Measurement("service_restarts", 4.0, {"service": "shepherd"}), "'service_restarts shepherd'=4c"),
        (Measurement("services_ready", 6.0, minimum=0.0, maximum=7.0), "'services_ready'=6;;;0;7"),
        (Measurement("gpu_temperature", 71.0, {"gpu": "0"}, warn=85.0, crit=95.0), "'gpu_temperature 0'=71;85;95"),
    ],
)
def test_units_follow_the_plugin_guidelines(measurement, expected):
    assert perfdatum(measurement) == expected
    assert PERFDATUM.fullmatch(expected)


def test_timestamps_have_no_perfdata_and_labels_lose_quotes_and_equals():
    assert perfdata([Measurement("pruner_last_success", 1.8e9)]) == ""
    odd = Measurement("http_response_duration", 0.25, {"path": "/it's?a=b"})
    assert perfdatum(odd) == "'http_response_duration /it_s?a_b'=0.25s"


def test_unknown_quantities_and_wrong_labels_are_refused():
    with pytest.raises(IsletOpsError, match="not a catalogued metric"):
        Measurement("disk_percent", 90.0)
    with pytest.raises(IsletOpsError, match="takes the labels"):
        Measurement("disk_used", 0.5)


def test_the_status_line_has_the_worst_state_and_lists_the_problems_worst_first():
    results = [
        ProbeResult("disk", Status.WARNING, 85.0, "data dir 85% full",
                    measurements=[Measurement("disk_used", 0.85, {"path": "/srv"}, warn=0.8, crit=0.9)]),
        ProbeResult("gpu", Status.UNKNOWN, None, "no GPU to check"),
        ProbeResult("e2e", Status.CRITICAL, 3.0, "test job failed: boom | bang"),
        ProbeResult("http", Status.OK, 0.1, "3 URLs ok"),
    ]  # fmt: skip
    line = nagios.status_line(results)
    assert nagios.probe_line(results[2]) == "CRITICAL e2e        test job failed: boom / bang (0.0 s)"
    assert line == (
        "ISLETNET CRITICAL - 3 of 4 probes not OK: e2e CRITICAL: test job failed: boom / bang; "
        "disk WARNING: data dir 85% full; gpu UNKNOWN: no GPU to check | 'disk_used /srv'=85%;80;90;0;100"
    )


def test_one_probe_gives_its_own_message_and_all_ok_says_how_many():
    one = [ProbeResult("tls", Status.OK, 40.0, "certificate expires in 40 days")]
    assert nagios.status_line(one) == "ISLETNET OK - tls: certificate expires in 40 days"
    many = [ProbeResult(name, Status.OK, None, "fine") for name in ("disk", "http")]
    assert nagios.status_line(many) == "ISLETNET OK - 2 probes OK"
    assert nagios.unknown_line("Config file x does not exist.\nPass --config.") == (
        "ISLETNET UNKNOWN - Config file x does not exist. Pass --config."
    )


def test_measurements_survive_the_state_file_and_unknown_ones_are_dropped():
    result = ProbeResult("disk", Status.OK, 1.0, "ok", measurements=[Measurement("disk_used", 0.5, {"path": "/"})])
    data = result.to_dict()
    assert ProbeResult.from_dict(data).measurements == result.measurements
    data["measurements"].append({"quantity": "retired_metric", "value": 1.0})
    assert ProbeResult.from_dict(data).measurements == result.measurements
