"""``hvmspec conform`` over Debian's firmware: rombios and rombios-legacy
(with the VGA BIOS placed as hvmloader did) and SeaBIOS, each through its
whole power-on self-test to "No bootable device", equal event by event on
both engines (hvmspec/conform.py). The reference runs POST in 0.5 to 9
minutes here (SeaBIOS is the longest: it executes 5.8 million instructions,
rombios 0.84 million): these tests are marked ``slow`` (``pytest -m "not
slow"`` leaves them out)."""

from __future__ import annotations

import pytest

from hvmspec import conform
from spec import hvmloader
from tests.conftest import cli, peer_file


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rombios", "rombios-legacy", "seabios"])
def test_conform_is_equal_over_the_whole_post(name):
    peer_file(*hvmloader.FIRMWARE[name])
    if name != "seabios":
        peer_file(*hvmloader.VGABIOS)
    case = conform.firmware_case(name)
    result = conform.run_case(case)          # the traces compared as they stream
    assert result.equal, (result.index, result.reference, result.impl, result.context)
    ref = result.runs[0]
    # all of POST, to its last line, and stopped there: not at the budget
    log = ref.firmware_log
    assert conform.FIRMWARE_END in log.rstrip("\n").splitlines()[-1]
    assert ref.exit["reason"] == "interrupted" and "firmware log" in ref.exit["message"]
    assert 2_000_000_000 < ref.instructions < conform.FIRMWARE_BUDGET
    assert result.events > 10_000


def test_a_firmware_case_stops_at_the_whole_line():
    """The listener stops the run at the newline of the line that contains
    the text, on port 0x402 only."""
    from spec import trace
    from spec.result import RunControl

    control = RunControl()
    stop = conform.LogLineStop("No bootable", control)
    for byte in b"No bootable device (on 0x500)\n":
        stop(trace.FirmwareLog(by="qemu-dm", port=0x500, byte=byte))
    for byte in b"No bootable device":
        stop(trace.FirmwareLog(by="qemu-dm", port=0x402, byte=byte))
    assert control.reason is None
    stop(trace.FirmwareLog(by="qemu-dm", port=0x402, byte=10))
    assert control.reason == conform.LogLineStop.REASON


def test_conform_names_the_firmware_cases_and_their_packages(monkeypatch, capsys):
    from hvmspec.cli import main
    monkeypatch.setitem(hvmloader.FIRMWARE, "rombios",
                        ("/usr/share/bochs/BIOS-not-installed", "bochsbios"))
    assert main(["conform", "hello", "rombios"]) == 2
    err = capsys.readouterr().err
    assert "BIOS '/usr/share/bochs/BIOS-not-installed' does not exist" in err
    assert "apt-get install bochsbios" in err and "Traceback" not in err
    assert main(["conform", "--firmware"]) == 2          # before any guest runs
    assert "apt-get install bochsbios" in capsys.readouterr().err
    proc = cli("conform", "no-such-guest")
    assert proc.returncode == 2 and "firmware case (rombios, rombios-legacy, seabios)" in proc.stderr
    proc = cli("conform", "--firmware", "--impl", "true")
    assert proc.returncode == 2 and "--firmware" in proc.stderr
    help_text = " ".join(cli("conform", "--help").stdout.split())
    assert "--firmware" in help_text and "No bootable device" in help_text
