"""Request models of the REST API (the answers' models are the predictor's, ``predictor.response``).

``/predict`` and ``/plot`` take the predictor's ``Architecture`` bare; the other endpoints wrap it
in the request models below.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from plan.files import TOOLS
from predictor.architecture import Architecture
from predictor.precision import FORMATS
from predictor.response import VIEW_HELP, PredictorInfo, PredictResponse, View
from predictor.schemas import MAX_STEP, MAX_STEPS, parse_steps

MAX_BATCH = 64  # /predict_batch: more architectures than this -> 400 naming "architectures"
MAX_VARIANTS = 16  # /compare
MAX_NAME = 100


def _check_steps(v: list[int] | None) -> list[int] | None:
    return parse_steps(v)


Step = Field(ge=0, le=MAX_STEP)


class HFConfigRequest(BaseModel):
    """A Hugging Face ``config.json`` object plus optional training fields of ``Architecture``."""

    model_config = ConfigDict(extra="forbid")

    config: dict[str, Any] = Field(description="The model's config.json as a JSON object.")
    training: dict[str, Any] | None = Field(
        default=None,
        description="Optional Architecture training fields (learning_rate, total_steps, batch_tokens, optimizer, "
        "precision_target, ...); anything not given is defaulted and reported.",
    )
    steps: list[Annotated[int, Step]] | None = Field(default=None, max_length=MAX_STEPS, description="Trajectory steps.")

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: list[int] | None) -> list[int] | None:
        return _check_steps(v)

    @model_validator(mode="before")
    @classmethod
    def _bare_config(cls, data: Any) -> Any:
        """A config.json sent bare gets the hint, not one "unknown field" per config key."""
        if isinstance(data, dict) and "config" not in data and {"model_type", "num_hidden_layers", "hidden_size"} & set(data):
            raise ValidationError.from_exception_data(cls.__name__, [InitErrorDetails(type=PydanticCustomError(
                "bare_config", 'a bare config.json: send it as {"config": <config.json>, "training": {...}} '
                "(training optional)"), loc=("config",), input=data)])
        return data


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    architectures: list[Architecture] = Field(min_length=1, max_length=MAX_BATCH, description=f"1 to {MAX_BATCH} architectures.")
    steps: list[Annotated[int, Step]] | None = Field(default=None, max_length=MAX_STEPS)
    view: View | None = Field(default=None, description=VIEW_HELP)
    layers: list[Annotated[int, Field(ge=0)]] | None = Field(default=None, max_length=1024,
                                                              description="Only these layers in `layers` (any view).")

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: list[int] | None) -> list[int] | None:
        return _check_steps(v)


class CompareRequest(BaseModel):
    """Two or more named variants; the first is the baseline the others are compared with."""

    model_config = ConfigDict(extra="forbid")

    variants: dict[str, Architecture] = Field(
        min_length=2, max_length=MAX_VARIANTS, description="name -> architecture; the first is the baseline."
    )
    steps: list[Annotated[int, Step]] | None = Field(default=None, max_length=MAX_STEPS)

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: list[int] | None) -> list[int] | None:
        return _check_steps(v)

    @field_validator("variants")
    @classmethod
    def _names(cls, v: dict[str, Architecture]) -> dict[str, Architecture]:
        for name in v:
            if not name.strip() or len(name) > MAX_NAME:
                raise ValueError(f"variant names must be 1-{MAX_NAME} characters: {name[:40]!r}")
        return v


class PlanRequest(BaseModel):
    """An architecture and the tool whose precision-plan file to write (``maforecast plan``)."""

    model_config = ConfigDict(extra="forbid")

    architecture: Architecture
    tool: Literal[*TOOLS]
    format: Literal[*FORMATS] | None = Field(
        default=None, description="Format (scaling recipe) of the precision target to plan for (default: the recipe "
        "the plan recommends; needed for a target of two formats without a choice of recipe).")
    model_type: str = Field(default="llama", max_length=64, description="HF model type whose module names to use.")


class PlanResponse(BaseModel):
    tool: str
    format: str
    filename: str = Field(description="A suggested file name.")
    content: str = Field(description="The file, header comment included.")


class ModelInfo(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    ready: bool
    predictor: PredictorInfo | None = None
    tracking_uri: str
    info: dict[str, Any] = Field(default_factory=dict, description="Registry info: metrics, data digest, tags.")
    error: str | None = None


class BatchResponse(BaseModel):
    predictor: PredictorInfo
    results: list[PredictResponse]
