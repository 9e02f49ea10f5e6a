"""Settings: the one typed configuration object every node receives.

Nodes read configuration only from here (LangGraph passes it as the runtime
context), never from environment variables or module globals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from fusion_models.gates import OtherCancerType

DEFAULT_CHECKPOINT = Path("checkpoints/glioma_demo.pt")


class Settings(BaseModel):
    """Everything a run can be configured with; all parts are chosen by registered name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fusion_model: str = Field(default="glioma_demo", description="Registered fusion model name.")
    checkpoint: Path = Field(default=DEFAULT_CHECKPOINT, description="Fusion model checkpoint file.")
    encoder: str = Field(default="hed_texture", description="Patch encoder for slides that arrive without features.")
    encoder_weights: Path | None = Field(default=None, description="Local weights of the patch encoder, if it needs any.")
    knowledge_source: str = Field(default="bundled", description="Registered pathway knowledge source.")
    embedder: str = Field(default="minilm", description="Sentence embedder for knowledge retrieval.")
    drafting_backend: str = Field(
        default="deterministic",
        description="Registered drafting backend: 'deterministic' (no model), 'transformers' (local folder), "
        "'openai' (an OpenAI-compatible server such as vLLM).",
    )
    llm_model: str | None = Field(
        default=None,
        description="Language model: a local model folder for 'transformers', the served model name for 'openai'.",
    )
    llm_base_url: str | None = Field(
        default=None, description="OpenAI-compatible endpoint for 'openai', e.g. http://127.0.0.1:8000/v1."
    )
    llm_timeout_s: float = Field(default=120.0, gt=0, description="Per-request timeout of a language-model call.")
    llm_max_retries: int = Field(
        default=2, ge=0, description="Retries of a language-model call (validation errors fed back, or transport)."
    )
    llm_max_new_tokens: int = Field(default=768, gt=0, description="Most tokens a language-model call may generate.")
    lang: Literal["en", "zh"] = Field(default="en", description="Primary language of report.html.")
    patch_size: int = Field(default=256, gt=0, description="Slide tiling patch size, level-0 pixels.")
    max_patches: int = Field(default=512, gt=0, description="Most patches embedded per slide.")
    top_patches: int = Field(default=4, gt=0, description="Attention patches cited as histology evidence per slide.")
    knowledge_hits: int = Field(default=3, gt=0, description="Knowledge entries retrieved per active mechanism.")
    cache_dir: Path = Field(default=Path(".cache/evidencechain"), description="Knowledge index cache.")
    interactive_review: bool = Field(default=False, description="Pause at human_review for a clinician.")
    review_db: str | None = Field(
        default=None,
        description="Review checkpointer: None = a SQLite file in the output folder; 'postgresql://...' = PostgreSQL.",
    )
    figures: bool = Field(default=True, description="Render MRI, slide and molecular-panel pictures per case.")
    imaging_features: bool = Field(
        default=False,
        description="Write imaging_features.json per case (habitat radiomics with pyradiomics, an optional extra; "
        "margin bands) and cite it from the spatial evidence.",
    )
    other_cancer_type: OtherCancerType = Field(
        default="refuse",
        description="A case of a cancer type the model was not trained for: 'refuse' (exit 2 naming "
        "case.json: cancer_type) or 'report_without_conclusions' (a report with an out_of_distribution flag).",
    )

    def as_provenance(self) -> dict[str, str | int | float | bool | None]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.model_dump().items()}
