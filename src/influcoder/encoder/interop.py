"""A saved encoder directory that sentence-transformers loads as it is.

Users of embedding models expect ``SentenceTransformer(path).encode(texts)``. For the poolings it can express
(``mean``, ``cls``) an encoder directory also carries sentence-transformers' module files, pointing at the same
backbone weights (nothing is stored twice): Transformer (``backbone/``) -> Pooling -> Dense (the linear head,
no activation) -> Normalize. The legacy module names are used, which sentence-transformers 3 to 6 read.

What differs: sentence-transformers encodes a string, so pass the sample's text view (by default
``f"{prompt}\\n\\n{response}"``); and it truncates long texts from the right where influcoder keeps the
response and cuts the prompt from the left, so vectors agree for texts within ``max_length`` tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

ST_POOLINGS = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token"}
"""influcoder poolings that sentence-transformers' Pooling module computes the same way."""


def _write_json(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def write_sentence_transformers_files(directory: Path, pooling: str, hidden: int, max_length: int,
                                      head: torch.nn.Linear | None, unit_norm: bool = True) -> bool:  # fmt: skip
    """Write the module files into a saved encoder `directory`; False (nothing written) for a pooling that
    sentence-transformers cannot express (attention, response, mean+response)."""
    from safetensors.torch import save_file

    if pooling not in ST_POOLINGS:
        return False
    modules = [("backbone", "Transformer"), ("1_Pooling", "Pooling")]
    _write_json(directory / "backbone" / "sentence_bert_config.json", {"max_seq_length": max_length,
                                                                       "do_lower_case": False})  # fmt: skip
    pooling_config = {"word_embedding_dimension": hidden, **{flag: False for flag in ST_POOLINGS.values()}}
    _write_json(directory / "1_Pooling" / "config.json", {**pooling_config, ST_POOLINGS[pooling]: True})
    if head is not None:
        modules.append(("2_Dense", "Dense"))
        _write_json(directory / "2_Dense" / "config.json", {
            "in_features": head.in_features, "out_features": head.out_features, "bias": head.bias is not None,
            "activation_function": "torch.nn.modules.linear.Identity"})  # fmt: skip
        weights = {"linear.weight": head.weight.detach().contiguous()}
        if head.bias is not None:
            weights["linear.bias"] = head.bias.detach().contiguous()
        save_file(weights, str(directory / "2_Dense" / "model.safetensors"))
    if unit_norm:  # a subspace encoder's coordinates are used as they are
        modules.append(("3_Normalize", "Normalize"))
        (directory / "3_Normalize").mkdir(exist_ok=True)
    _write_json(directory / "modules.json", [
        {"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
        for i, (path, kind) in enumerate(modules)])  # fmt: skip
    return True
