"""The scenario file as people write it: unquoted digits keep what was written."""

from __future__ import annotations

from pathlib import Path

from nlu.scenarios import load_scenarios, report, run_scenarios

UNQUOTED = """\
customers:
  - account_number: 40077001
    pin: 0123
    name: Zero Lead
    date_of_birth: 1990-01-02
    phone_number: +15551239999
    address: 5 Quay Street, Brightwater
    plan: Unlimited 5G
    balance_due: 12.50
    due_date: 2026-12-20
    data_used_gb: 3
    data_allowance_gb: 50
    area: Brightwater
outages:
  - {area: Brightwater, service: broadband, status: investigating, eta: 18:00}
calls:
  - name: unquoted PIN with a leading zero, keyed in
    caller_id: +15551239999
    turns:
      - say: "My internet is down"
        expect: {intent: report_outage}
      - say: "My account number is 40077001"
      - dtmf: 0123
        expect: {verified: true}
    expect:
      reply_contains: ["18:00"]
      never_says: ["0123"]
"""


def test_unquoted_pins_times_and_phone_numbers_keep_their_text(tmp_path: Path) -> None:
    path = tmp_path / "unquoted.yaml"
    path.write_text(UNQUOTED)
    data = load_scenarios(path)
    customer = data["customers"][0]
    assert customer["pin"] == "0123" and customer["phone_number"] == "+15551239999"
    assert customer["account_number"] == 40077001 and customer["data_used_gb"] == 3
    assert data["outages"][0]["eta"] == "18:00"
    assert data["calls"][0]["turns"][2]["dtmf"] == "0123"


def test_a_call_written_with_unquoted_digits_runs_as_written(assistant, tmp_path: Path) -> None:
    path = tmp_path / "unquoted.yaml"
    path.write_text(UNQUOTED)
    result = report(run_scenarios(path, assistant.dialogue))
    assert result["passed"] == 1, result["calls"]
