"""influcoder: fast influence-based training-data attribution for LLMs.

Gradient influence labels of a decoder (LoRA gradients on response tokens, CountSketch-compressed, cosine
similarity) are distilled into a small text encoder that then scores pools at encoder speed. Every CLI
command is a thin call of one of the names below (see docs/api.md). They are imported lazily, so
`import influcoder` and `influcoder --help` stay fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> module that defines it; the CLI command it serves in the comment
_LAZY = {
    "Sample": "influcoder.data.records",
    "load_samples": "influcoder.data.loading",  # data, and every DATA argument
    "write_samples": "influcoder.data.formats",  # data --out
    "fetch_asset": "influcoder.data.assets",  # assets fetch
    "list_assets": "influcoder.data.assets",  # assets list
    "LabelSettings": "influcoder.labels.settings",
    "FinetuneSettings": "influcoder.labels.finetune",
    "finetune": "influcoder.labels.finetune",  # finetune
    "label": "influcoder.labels.labelling",  # label
    "load_labels": "influcoder.labels.labelling",
    "LabelsDir": "influcoder.labels.labels_dir",  # a labels directory, typed (labels.json: LabelsRecord)
    "LabelsRecord": "influcoder.labels.labels_dir",
    "DistillRun": "influcoder.encoder.run_record",  # a distill output directory, typed
    "TrainingRecord": "influcoder.encoder.run_record",
    "EvalSplit": "influcoder.encoder.run_record",
    "IndexManifest": "influcoder.attribution.index_manifest",  # an index's manifest.json, typed
    "select_indices": "influcoder.encoder.selection",  # select
    "CoverageReference": "influcoder.encoder.coverage",  # the out-of-coverage flag (index, attribute)
    "merge_labels": "influcoder.labels.merge",  # merge-labels
    "projection_fidelity": "influcoder.labels.fidelity",  # fidelity
    "DistillSettings": "influcoder.encoder.settings",
    "distill_labels": "influcoder.encoder.distill",  # distill
    "InfluenceEncoder": "influcoder.encoder.model",
    "evaluate_encoder": "influcoder.evaluation.evaluate",  # evaluate
    "evaluate_scorers": "influcoder.evaluation.evaluate",  # evaluate --baselines
    "evaluation_data": "influcoder.evaluation.evaluate",
    "write_report": "influcoder.evaluation.report",  # evaluate --report
    "ToxicitySettings": "influcoder.tasks.toxicity",
    "build_toxicity_task": "influcoder.tasks.toxicity",
    "ToxicityRun": "influcoder.experiments.toxicity",
    "run_toxicity": "influcoder.experiments.toxicity",  # toxicity
    "archive_replicate": "influcoder.experiments.toxicity_archive",  # toxicity --archive
    "auprc": "influcoder.metrics",
    "EmbeddingIndex": "influcoder.attribution.index",  # index
    "Influcoder": "influcoder.attribution.influcoder",  # attribute, filter
    "audit_attribution": "influcoder.attribution.audit",  # attribute --audit
    "run_demo": "influcoder.experiments.demo",  # demo
    "progress_bars": "influcoder.core.progress",  # --quiet: the switch of every progress bar
    "enable_progress_bars": "influcoder.core.progress",
    "disable_progress_bars": "influcoder.core.progress",
}
_RENAMED = {"fetch_asset": "fetch"}
__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), _RENAMED.get(name, name))
    raise AttributeError(f"module 'influcoder' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
