"""Library errors name settings fields; the CLI prints the same message with flags (`SettingError.as_flags`)."""

from __future__ import annotations

import pytest

from influcoder.cli.main import main
from influcoder.core.errors import InflucoderError, SettingError, cli_message, with_flags


def test_a_setting_error_names_the_field_and_the_cli_its_flag():
    error = SettingError("hard_candidates", "20 is out of range: 0 to `candidates_per_batch`")
    assert str(error) == "hard_candidates 20 is out of range: 0 to `candidates_per_batch`"
    assert error.as_flags() == "--hard-candidates 20 is out of range: 0 to --candidates-per-batch"
    assert cli_message(error) == error.as_flags()
    assert cli_message(InflucoderError("plain")) == "plain"


def test_other_errors_get_the_running_commands_fields_as_flags_and_nothing_else():
    """Library advice names fields ("pick another `out`"); the CLI writes those that are flags of the command
    it runs, and leaves any other backticked word (a function, a command) as it is."""
    error = InflucoderError("x holds a run; set `overwrite` or pick another `out` (see `subspace_encoder`)")
    fields = {"out", "overwrite", "lr"}
    assert cli_message(error, fields) == "x holds a run; set --overwrite or pick another --out (see `subspace_encoder`)"
    assert cli_message(error) == str(error)  # outside a command: as the library wrote it
    assert with_flags("rerun `influcoder label` with the same `out`", fields) == (
        "rerun `influcoder label` with the same --out"
    )


def test_a_path_or_a_word_in_the_message_is_never_taken_for_a_field():
    error = SettingError("out", "/tmp/out/init would overwrite the encoder `init` starts from; pick another `out`")
    assert error.as_flags() == (
        "--out /tmp/out/init would overwrite the encoder --init starts from; pick another --out"
    )


@pytest.mark.parametrize(
    ("make", "library"),
    [
        (lambda: __import__("influcoder.labels.settings", fromlist=["x"]).LabelSettings(batch_tokens=0),
         "batch_tokens must be at least 1, got 0"),
        (lambda: __import__("influcoder.encoder.settings", fromlist=["x"]).DistillSettings(hard_candidates=99),
         "hard_candidates 99 is out of range: 0 to `candidates_per_batch`"),
        (lambda: __import__("influcoder.labels.finetune", fromlist=["x"]).FinetuneSettings(lr=0),
         "lr must be positive, got 0"),
    ],
)  # fmt: skip
def test_settings_validators_raise_field_named_errors(make, library):
    with pytest.raises(SettingError) as caught:
        make()
    assert str(caught.value) == library and not str(caught.value).startswith("--")


def test_the_cli_prints_flags(capsys):
    assert main(["distill", "--labels", "L", "--out", "O", "--objective", "influcoder", "--hard-candidates", "99"]) == 2
    assert "--hard-candidates 99 is out of range: 0 to --candidates-per-batch" in capsys.readouterr().err
