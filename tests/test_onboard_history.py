"""The prefix report in `turnspec onboard` (report and saved profile): whether re-rendering after a user / tool /
assistant message keeps the earlier tokens, on real tokenizer folders from ../shared."""

from __future__ import annotations

from typer.testing import CliRunner

from helpers.paths import SHARED, need
from turnspec.cli import app
from turnspec.onboard import onboard_model
from turnspec.onboard.report import format_report, summary_row


def test_qwen3_changes_earlier_tokens_when_a_user_message_follows():
    report = onboard_model(need(SHARED / "models" / "qwen3-tokenizer"))
    history = report.findings["history"]
    assert history["prefix_stable"] is False
    user = history["appending"]["user"]
    assert user["extends"] is False and "reasoning dropped from the earlier turn" in user["reasons"]
    assert history["appending"]["tool"] == {"extends": True}
    assert summary_row(report)["history"] == "changes: user"
    text = format_report(report)
    assert "history     re-rendering changes earlier tokens" in text
    assert "append user: earlier tokens change from token" in text


def test_smollm2_keeps_them_and_the_profile_saves_it(tmp_path):
    folder = need(SHARED / "models" / "smollm2-135m-instruct")
    result = CliRunner().invoke(app, ["onboard", str(folder), "--save", "--profiles", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "re-rendering keeps earlier tokens" in result.output
    [profile] = tmp_path.glob("*.yaml")
    saved = profile.read_text(encoding="utf-8")
    assert "history:" in saved and "prefix_stable: true" in saved
