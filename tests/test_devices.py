"""`--device auto|cpu|cuda` reaches every stage; `auto` means CUDA when present (checked on CPU)."""

from __future__ import annotations

import pytest
import torch

from influcoder.cli.main import main, parse
from influcoder.core.devices import resolve_device
from influcoder.core.errors import InflucoderError
from influcoder.encoder.model import InfluenceEncoder


def test_auto_is_cuda_only_when_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") and resolve_device(None) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(InflucoderError, match=r"'cuda:7': this machine has 2 CUDA device\(s\), cuda:0 to cuda:1"):
        resolve_device("cuda:7")


@pytest.mark.parametrize(
    "device, said",
    [("cuda", "torch sees no CUDA device"), ("cuda:7", "torch sees no CUDA device"), ("tpu", "not a torch device")],
)
@pytest.mark.parametrize("command", ["label", "distill"])
def test_a_device_this_machine_lacks_is_refused_before_anything_is_written(
    tiny_model_dir, tmp_path, monkeypatch, capsys, device, said, command
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"prompt": "what is one", "response": "one"}\n{"prompt": "and two", "response": "two"}\n')
    out = tmp_path / "out"
    argv = {
        "label": ["label", "--pool", str(pool), "--queries", str(pool), "--model", str(tiny_model_dir)],
        "distill": ["distill", "--labels", str(tmp_path / "labels")],
    }[command]
    assert main([*argv, "--out", str(out), "--device", device, "--quiet"]) == 2
    assert f"--device {device!r}: {said}" in capsys.readouterr().err
    assert not out.exists()


def test_encoder_inputs_follow_the_encoder(tiny_bert_dir, tmp_path):
    encoder = InfluenceEncoder.from_backbone(str(tiny_bert_dir), max_length=16, device="cpu")
    encoder.save_pretrained(tmp_path / "enc")
    loaded = InfluenceEncoder.from_pretrained(tmp_path / "enc", device="auto")
    assert loaded.device == resolve_device("auto")
    batch = loaded.tokenize(["one text", "another text here"])
    assert all(t.device == loaded.device for t in batch.values())
    assert loaded.encode(["one text"]).shape == (1, loaded.dim)


def test_auto_moves_the_encoder_and_its_inputs_to_cuda_when_present(tiny_bert_dir, tmp_path, monkeypatch):
    """On a CPU runner "auto" resolves to the CPU, where moving is a no-op; here CUDA is faked present and the
    moves are recorded instead of done, so a stage that ignores `device` (or moves only the model, not its
    inputs) fails."""
    InfluenceEncoder.from_backbone(str(tiny_bert_dir), max_length=16, device="cpu").save_pretrained(tmp_path / "e")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    moved_modules, moved_tensors = [], []

    def module_to(self, *args, **kwargs):
        moved_modules.append(torch.device(args[0]) if args else kwargs.get("device"))
        return self

    def tensor_to(self, *args, **kwargs):
        moved_tensors.append(args[0] if args else kwargs.get("device"))
        return self

    monkeypatch.setattr(torch.nn.Module, "to", module_to)
    loaded = InfluenceEncoder.from_pretrained(tmp_path / "e", device="auto")
    assert moved_modules == [torch.device("cuda")]
    monkeypatch.setattr(type(loaded), "device", property(lambda self: torch.device("cuda")))
    monkeypatch.setattr(torch.Tensor, "to", tensor_to)
    batch = loaded.tokenize(["one text", "another text here"])
    assert len(moved_tensors) == len(batch) and all(torch.device(d) == torch.device("cuda") for d in moved_tensors)


class Stop(InflucoderError):
    """Raised by a spy once it has seen the device, so the command stops there."""


@pytest.mark.parametrize(
    "argv",
    [
        ["index", "--encoder", "E", "--pool", "P", "--out", "O"],
        ["evaluate", "--encoder", "E", "--labels", "L"],
        ["attribute", "--index", "I", "--queries", "Q", "--encoder", "E"],
        ["filter", "--index", "I", "--queries", "Q", "--encoder", "E", "--drop-top", "1", "--kept", "k.jsonl"]
        + ["--dropped", "d.jsonl"],
    ],
)
def test_encoder_stages_load_on_the_requested_device(argv, monkeypatch, tmp_path):
    seen = []

    def spy(cls, directory, device=None, backend="torch"):
        seen.append(device)
        raise Stop("stop")

    def fake_index(self, path):
        from influcoder.attribution.index_manifest import IndexManifest

        # a float index that records its encoder (no backend recorded: the default)
        self.manifest = IndexManifest("0" * 64, 4, "float16", "Flat", encoder_path=str(tmp_path / "enc"))

    monkeypatch.setattr(InfluenceEncoder, "from_pretrained", classmethod(spy))
    monkeypatch.setattr("influcoder.attribution.index.EmbeddingIndex.__init__", fake_index)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with 4 GPUs, as far as --device knows
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "--device", "cuda:3"]) == 2
    assert seen == ["cuda:3"]


def test_label_and_distill_take_the_device(monkeypatch, tmp_path):
    _, label = parse(["label", "--pool", "P", "--queries", "Q", "--out", "O", "--device", "cpu"])
    assert label.settings.device == "cpu"
    seen = {}

    def distill_labels(*args, **kw):
        seen.update(kw)
        raise Stop("stop")

    monkeypatch.setattr("influcoder.encoder.distill.distill_labels", distill_labels)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert main(["distill", "--labels", "L", "--out", str(tmp_path / "o"), "--device", "cuda"]) == 2
    assert seen["device"] == "cuda"
    _, demo = parse(["demo", "--device", "cpu"])
    assert demo.device == "cpu"
