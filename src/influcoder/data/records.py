"""Samples and the loaders that turn user files into them.

A `Sample` is one prompt/response pair. Influence is measured on the *response* tokens only (the prompt is
context), so every loader must say unambiguously which text is which:

* flat records (JSONL, CSV, Parquet, a saved HF ``datasets`` directory) name a prompt and a response
  field (``--prompt-field``/``--response-field``; by default the first present of a few common names);
* chat records carry a list of ``{"role", "content"}`` messages under ``messages`` (or ``input``, the
  OpenAI-evals layout, whose answer is in ``ideal``): the last assistant turn is the response and all turns
  before it are the prompt. The messages are kept in ``meta["messages"]`` so a chat template can render
  the conversation exactly.

Ids are deterministic: a record's own ``id`` field when it has one, else a hash of its text, so every later
artifact (gradient stores, embeddings, scores) points back to the same text across runs and machines.

Bad input raises `DataError` naming the file, the line (JSONL) or row (CSV/Parquet, 1-based, header
excluded) and what was expected. Nothing is half-loaded: a file loads completely or raises.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from influcoder.core.errors import DataError, InflucoderError

PROMPT_FIELDS = ("prompt", "instruction", "question", "query", "input")


RESPONSE_FIELDS = ("response", "completion", "output", "answer", "target", "ideal")


@dataclass(frozen=True)
class Sample:
    """One prompt/response pair; `meta` holds everything else of the record (labels, task, messages)."""

    id: str
    prompt: str
    response: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_record(self) -> dict[str, Any]:
        """The JSON-serializable record this sample round-trips through (`id`, `prompt`, `response`, `meta`)."""
        record: dict[str, Any] = {"id": self.id, "prompt": self.prompt, "response": self.response}
        if self.meta:
            record["meta"] = self.meta
        return record


def content_id(prompt: str, response: str) -> str:
    """A stable id from the text alone: the first 16 hex digits of sha256(prompt US response)."""
    return hashlib.sha256(f"{prompt}\x1f{response}".encode()).hexdigest()[:16]


def fingerprint(samples: Sequence[Sample]) -> str:
    """sha256 over ids and texts in order: two sample lists with equal fingerprints are the same data."""
    digest = hashlib.sha256()
    for s in samples:
        for part in (s.id, s.prompt, s.response):
            digest.update(part.encode())
            digest.update(b"\x1f")
        digest.update(b"\x1e")
    return digest.hexdigest()


def _render_messages(messages: Sequence[dict[str, str]]) -> str:
    """A plain rendering of chat turns, used as `Sample.prompt` (the chat template uses meta['messages'])."""
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)


def _check_messages(messages: Any, path: str, line: int, key: str) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise DataError(path, line, f"field {key!r} must be a non-empty list of {{role, content}} messages")
    checked = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise DataError(
                path, line, f"{key}[{i}] must be an object with string 'role' and 'content', got {_short(m)}"
            )
        checked.append({"role": m["role"], "content": m["content"]})
    return checked


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _pick(record: dict, explicit: str | None, candidates: Sequence[str]) -> str | None:
    if explicit is not None:
        return explicit if explicit in record else None
    return next((name for name in candidates if name in record), None)


def _as_text(value: Any, path: str, line: int, key: str, alternatives: bool = False) -> str:
    """The field's text. `alternatives`: a list of strings is several acceptable answers (OpenAI evals'
    ``ideal``) and the first is the reference; anywhere else a list is refused, not cut to its first element."""
    if isinstance(value, str):
        return value
    if alternatives and isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value[0]
    raise DataError(path, line, f"field {key!r} must be a string, got {type(value).__name__} {_short(value)}")


def record_to_sample(
    record: Any,
    path: str,
    line: int,
    prompt_field: str | None = None,
    response_field: str | None = None,
    id_field: str = "id",
    allow_empty_response: bool = False,
) -> Sample:
    """Turn one parsed record into a `Sample` (id still unset when the record has none: "")."""
    if not isinstance(record, dict):
        raise DataError(path, line, f"expected a JSON object per record, got {type(record).__name__}")
    messages_key = "messages" if "messages" in record else None
    if messages_key is None and isinstance(record.get("input"), list) and prompt_field is None:
        messages_key = "input"  # OpenAI evals layout: {"input": [messages], "ideal": answer}
    meta: dict[str, Any] = {}
    if messages_key is not None:
        messages = _check_messages(record[messages_key], path, line, messages_key)
        answer_key = _pick(record, response_field, ("ideal", "response", "completion"))
        if answer_key is not None and answer_key != messages_key:
            response = _as_text(record[answer_key], path, line, answer_key, alternatives=answer_key == "ideal")
            prompt_messages = messages
        elif messages[-1]["role"] == "assistant":
            response, prompt_messages = messages[-1]["content"], messages[:-1]
        else:
            raise DataError(
                path,
                line,
                f"chat record has no response: the last turn of {messages_key!r} is not an "
                "assistant turn and there is no 'ideal'/'response' field",
            )
        if not prompt_messages:
            raise DataError(path, line, f"chat record has no prompt: {messages_key!r} holds only the response")
        prompt = _render_messages(prompt_messages)
        meta["messages"] = prompt_messages
        used = {messages_key, answer_key}
    else:
        p_key = _pick(record, prompt_field, PROMPT_FIELDS)
        r_key = _pick(record, response_field, RESPONSE_FIELDS)
        if p_key is None:
            want = repr(prompt_field) if prompt_field else "one of " + ", ".join(PROMPT_FIELDS)
            raise DataError(path, line, f"missing prompt field: expected {want} (or a 'messages' list)")
        if r_key is None:
            want = repr(response_field) if response_field else "one of " + ", ".join(RESPONSE_FIELDS)
            raise DataError(path, line, f"missing response field: expected {want}")
        prompt = _as_text(record[p_key], path, line, p_key)
        response = _as_text(record[r_key], path, line, r_key, alternatives=r_key == "ideal")
        used = {p_key, r_key}
    if not allow_empty_response and not response.strip():
        raise DataError(path, line, "empty response: influence is measured on response tokens, so one is required")
    raw_id = record.get(id_field)
    if raw_id is not None and (isinstance(raw_id, bool) or not isinstance(raw_id, (str, int))):  # true is no id
        raise DataError(path, line, f"field {id_field!r} must be a string or integer, got {_short(raw_id)}")
    extra = record.get("meta") if isinstance(record.get("meta"), dict) else {}
    meta.update(extra)
    meta.update({k: v for k, v in record.items() if k not in used | {id_field, "meta"}})
    return Sample("" if raw_id is None else str(raw_id), prompt, response, meta)


class IdAssigner:
    """The id rules of a sample file, one sample at a time: an empty id becomes the content hash (``-2``,
    ``-3``... on repeated text), a repeated id is refused naming both records. `assign_ids` applies it to a
    list; `influcoder.data.stream` to a file it does not hold in memory."""

    def __init__(self) -> None:
        self.first: dict[str, int] = {}  # id -> record number where it was first seen

    def take(self, sample: Sample, path: str, number: int) -> str:
        sid = sample.id
        if not sid:
            base = content_id(sample.prompt, sample.response)
            sid, n = base, 1
            while sid in self.first:
                n += 1
                sid = f"{base}-{n}"
        elif sid in self.first:
            raise DataError(
                path, number, f"duplicate id {sid!r} (first seen at record {self.first[sid]}); ids must be unique"
            )
        self.first[sid] = number
        return sid


def assign_ids(samples: list[Sample], where: Sequence[tuple[str, int]] | None = None) -> list[Sample]:
    """Fill empty ids with content hashes (``-2``, ``-3``... on repeated text) and refuse duplicate ids."""
    ids = IdAssigner()
    out = []
    for i, s in enumerate(samples):
        path, line = where[i] if where else ("<samples>", i + 1)
        sid = ids.take(s, path, line)
        out.append(s if sid == s.id else Sample(sid, s.prompt, s.response, s.meta))
    return out


def sample_groups(samples: Sequence[Sample], key: str) -> list[str]:
    """Each sample's `meta[key]` (e.g. its task) as text, or an error naming a sample that lacks it."""
    missing = [s.id for s in samples if key not in s.meta]
    if missing:
        raise InflucoderError(
            f"{len(missing)} of {len(samples)} samples have no meta field {key!r} to group by (e.g. {missing[0]})"
        )
    return [str(s.meta[key]) for s in samples]


def subsample(items: list, limit: int | None, seed: int) -> list:
    """A seeded subset of `limit` items, kept in their original order (all items when limit is None)."""
    if limit is None or limit >= len(items):
        return list(items)
    keep = np.sort(np.random.default_rng(seed).choice(len(items), size=limit, replace=False))
    return [items[i] for i in keep]
