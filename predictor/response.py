"""The answer's schemas: what a registered predictor version returns (``/predict``, ``/compare``,
``/predict_batch``, ``/nowcast``; ``predictor.pyfunc``). One definition each; the service and review
read these typed fields."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from predictor.architecture import Architecture
from predictor.schemas import ApplicabilityWarning, Interval, LayerForecast, LayerNowcast, NowcastInfo

__all__ = [
    "ChangeEffect", "CitationOut", "CompareResponse", "Difference", "FormatPlan", "Interval",
    "MechanismRisk", "Mitigation", "NowcastResponse", "PrecisionPlan",
    "PrecisionRisk", "PredictResponse", "PredictorInfo", "RecipeOption", "ScheduleRisk", "Summary",
    "TermEffect", "VIEWS", "VIEW_HELP", "VariantSummary", "View", "view_for",
]

VIEWS = ("compact", "full", "summary")
View = Literal["compact", "full", "summary"]
VIEW_HELP = ("compact (the default, what a review tool and a person read first; ~35 KB for 32 layers): the summary, every "
             "layer's essentials (emergence, end, steady state, peak |a|, class and massive probabilities; no trajectory, "
             "no curve parameters), the precision risk of the formats the plan's recipe runs (without per-layer details), "
             "the precision plan for those formats without its per-layer sentences, the five best-ranked effective "
             "mitigations (as /compare names them), each with its predicted effect on those formats (without its per-field terms) and first citation; "
             "full: everything, every layer with its per-step trajectory and curve parameters, every format "
             "(~200 KB for 32 layers; the default where `steps` asks for trajectory points); summary: the compact answer "
             "without layers unless `layers` picks some (sweeps).")


def view_for(view: str | None, steps: Any) -> str:
    """The view an answer is given in: the one asked for, else full where ``steps`` asks for trajectory points, else
    compact (every door and the service's answer cache resolve it here, so one answer has one key)."""
    return view or ("full" if steps else "compact")


class PredictorInfo(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    name: str
    version: str | None = None
    alias: str | None = None
    model_uri: str | None = None
    beats_baseline: bool | None = Field(default=None, description="Whether this predictor beats the predict-the-constant "
                                        "baseline on held-out families (False: served only because nothing better exists).")
    held_out: str | None = Field(default=None, description="Its held-out score next to the constant's, in words.")


class Summary(BaseModel):
    """Model-level summary of the per-layer forecast."""

    n_layers: int
    t_end: int
    massive_layers: list[int] = Field(description="Layers predicted to host massive activations.")
    earliest_emergence_step: Interval | None = Field(description="Smallest t_emerge within the plan among massive layers "
                                                     "(all layers if none); None where no layer emerges within the plan.")
    earliest_emergence_layer: int | None
    largest_peak_abs: Interval
    largest_peak_layer: int
    largest_ratio_end: Interval
    largest_ratio_layer: int
    early_peak_layers: list[int] = Field(description="Layers more likely than not to peak and decline (class early_peak "
                                         "with probability > 0.5; a nowcast can say so, the evidence alone does not).")
    p_massive: float | None = Field(default=None, description="Probability that some layer is massive (Sun et al.) by the planned end.")
    p_emerge_within_plan: float | None = Field(default=None, ge=0.0, le=1.0, description="Probability that some layer "
                                               "emerges (t_emerge) before the planned end: the largest layer's "
                                               "p_emerge_within_plan (the layers share one clock, so the earliest decides).")
    unpredictable: list[str] = Field(default_factory=list, description="Targets not predictable from the data held (constant shown).")
    protocol: str = Field(default="seq_mean", description="The statistic largest_peak_abs and every layer's magnitudes are in.")
    worst_case_peak_abs: Interval | None = Field(default=None, description="The largest layer's peak |a| as the maximum "
                                                 "over a ~17M-token corpus (corpus_max): what precision risk compares with "
                                                 "each format's limit.")


class LayerRiskOut(BaseModel):
    layer: int
    check: str
    quantity: str = Field(description="peak_abs or ratio")
    limit: float
    predicted: float
    predicted_hi: float
    certainty: str = Field(description="likely (point forecast crosses) | possible (only the interval does)")
    from_step: float | None
    from_step_hi: float | None
    probability: float = Field(description="Probability that this layer crosses this check's limit by the planned end.")


class ScheduleRisk(BaseModel):
    """A point of the training plan where a published result puts risk for this format (predictor.schedule_risk)."""

    kind: str = Field(description="fp8_swiglu_tokens (FP8 + SwiGLU past ~200B tokens) | lr_decay_ptq (weight "
                      "quantization error rises once the learning rate decays)")
    step: int | None = Field(description="The plan's step there (None: the plan never gets there).")
    tokens: float | None
    within_plan: bool
    evidence: Literal["number", "direction"] = Field(description="number: the source gives the point; direction: only "
                                                      "that risk rises from there (no magnitude encoded).")
    source: str
    text: str


class MechanismRisk(BaseModel):
    """One way a format breaks a model (``predictor.mechanisms``): its probability, or why there is none."""

    name: str = Field(description="residual_overflow | mlp_output_overflow | norm_accumulation | attention_logits | "
                      "gate_up_product")
    locus: str
    modelled: bool = Field(description="false: the engine does not forecast this quantity (probability null, never 0).")
    probability: float | None = Field(description="P(this mechanism breaks the forward pass by the planned end).")
    in_format_probability: bool = Field(description="Counted in the format's probability (false: conditional on the "
                                        "runtime, or not modelled).")
    condition: str
    risk_factors: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list, description="Reports of this mechanism breaking real models.")
    why: str


class PrecisionRisk(BaseModel):
    format: str = Field(description="A format with its scaling recipe: fp16 | bf16 | fp8_e4m3 | fp8_e5m2 (one scale per "
                        "tensor) | fp8_rowwise | fp8_block128 | mxfp8 | nvfp4 | int8_per_tensor | int8_per_token "
                        "(docs/PRECISION.md)")
    max_value: float
    at_risk: bool = Field(description="The decision every door shares (predictor.precision.GATE): a *breaking* limit "
                          "of this format (overflow to inf, a scaled FP8 or INT8 median lost) is crossed with probability "
                          "above the format's gate threshold (predictor.precision.GATE). Swamping and unscaled FP8 "
                          "overflow are stated in `why` and `check_probabilities`, not called a risk.")
    target: bool = Field(description="The architecture's precision_target uses this format.")
    layers: list[int] = Field(description="Layers whose point forecast crosses a breaking limit (likely).")
    possible_layers: list[int] = Field(description="Further layers that cross a breaking limit only within their interval.")
    from_step: float | None = Field(description="Earliest step a layer's point forecast crosses a breaking limit.")
    stated_layers: list[int] = Field(default_factory=list, description="Layers whose point forecast crosses only a limit "
                                     "that breaks nothing a practitioner would notice (swamping, unscaled FP8 overflow, an "
                                     "INT8 step above the median): stated, not at risk.")
    probability: float | None = Field(default=None, description="Probability that some layer crosses one of this format's "
                                      "breaking limits by the planned end (0 for BF16: nothing breaks).")
    check_probabilities: dict[str, float] = Field(default_factory=dict, description="check -> probability that some "
                                                  "layer crosses that check's limit by the planned end.")
    why: str
    details: list[LayerRiskOut]
    mechanisms: list[MechanismRisk] = Field(default_factory=list, description="FP16: each way it breaks, with its own "
                                            "probability or 'not modelled' (predictor.mechanisms).")
    schedule: list[ScheduleRisk] = Field(default_factory=list, description="Schedule-linked risk terms of the plan for "
                                         "this format (target formats only), each with its source.")


class PlannedLayer(BaseModel):
    layer: int
    check: str = Field(description="The breaking check this layer crosses with the highest probability.")
    probability: float
    predicted: float
    predicted_hi: float
    limit: float
    from_step: float | None = Field(description="First step the point forecast crosses (None: only the interval does).")
    from_step_hi: float | None = Field(description="First step the interval's upper end crosses.")
    why: str


class FormatPlan(BaseModel):
    format: str
    alpha: float = Field(description="A layer is kept when P(breaking limit crossed) > alpha (predictor.precision.GATE, the threshold every door shares).")
    breaking_checks: list[str] = Field(description="The checks of this format that break something (predictor.precision).")
    keep_high_precision: list[PlannedLayer] = Field(description="Layers to keep out of this format, and why.")
    monitor: list[int] = Field(description="Layers worth logging (kept ones included).")
    residual_risk: float = Field(description="Probability that a layer outside the plan still crosses a breaking limit.")
    why: str


class RecipeOption(BaseModel):
    """One scaling recipe of the precision target, judged by the gate (predictor.precision.SPECS)."""

    format: str = Field(description="The format with its scaling recipe (a key of the formats table).")
    label: str
    granularity: str = Field(description="What shares one scale: tensor | row | block.")
    at_risk: bool = Field(description="The gate with every layer in this recipe: a breaking limit crossed with "
                          "probability above the threshold (false for a recipe without a breaking check).")
    probability: float = Field(description="The gate's probability for this recipe (0: no breaking check).")
    keep: int = Field(description="Layers the plan keeps in high precision under this recipe.")
    tools: dict[str, str] = Field(description="The recipe in each tool's own words.")


class PrecisionPlan(BaseModel):
    """What to keep in high precision for the architecture's precision target (predictor.plan)."""

    precision_target: str
    recipe: str | None = Field(default=None, description="The recipe the plan is for: the architecture's "
                               "precision_recipe, else the cheapest safe one (the coarsest scaling that passes the gate, "
                               "then the fewest layers in high precision); null when the target has no choice of recipe.")
    recipe_why: str | None = None
    at_risk: bool = Field(default=False, description="The design's decision for its target, the one every door gives: "
                          "some format the recipe uses (every format of a target without a choice of recipe) is at risk "
                          "by the gate (predictor.precision.GATE).")
    recipes: list[RecipeOption] = Field(default_factory=list, description="Every recipe of the target, cheapest "
                                        "(coarsest scaling) first.")
    formats: list[FormatPlan]


class CitationOut(BaseModel):
    title: str
    arxiv: str
    url: str
    setting: str
    result: str
    confidence: str
    repo: str | None = None


Evidence = Literal["controlled", "controlled_direction", "associational", "time_model", "prior", "not_modelled"]
EVIDENCE_HELP = ("controlled: comparisons that changed this one thing in one study (controlled_effects.csv); "
                 "controlled_direction: such comparisons that report the direction only (the size is the table's "
                 "typical effect); associational: the cross-family association of trained models, widened by how far "
                 "associations missed the controlled estimates; time_model: the training plan's clock (plan exponents "
                 "from arXiv 2410.10781's grids, curve from the Pythia checkpoints); prior: no comparison and no trained "
                 "model varies it: the distribution of the measured changes' effects, wide; not_modelled: the forecast does not "
                 "read the field and no evidence informs it: no effect is claimed (ratio null).")


class TermEffect(BaseModel):
    """One changed field's part of a what-if: its effect on the largest peak |a| and what it rests on."""

    field: str
    before: Any
    after: Any
    ratio: Interval | None = Field(description="after/before of the largest peak |a| from this change, with its 90 % "
                                   "interval (null: not modelled).")
    evidence: Evidence = Field(description=EVIDENCE_HELP)
    studies: list[str] = Field(default_factory=list, description="The controlled studies it rests on (arXiv ids).")
    association: Interval | None = Field(default=None, description="The cross-family association's ratio for the same "
                                         "change, where the trained models vary it (shown, not used, when controlled).")
    disagreement: bool = Field(default=False, description="The association lies outside the controlled 90 % interval.")
    text: str


class ChangeEffect(BaseModel):
    """What a change of the design does (the intervention question): ratios after/before with their own
    90 % intervals from the uncertainty of the changed terms, not two absolute intervals side by side."""

    peak_abs_ratio: Interval | None = Field(description="after/before of the largest peak |a| at the planned end, 90 % "
                                            "interval (null: no changed field is modelled, evidence not_modelled).")
    ratio_end_ratio: Interval | None = Field(description="after/before of the largest top-1/median ratio at the planned end.")
    risk_before: dict[str, float] = Field(description="precision format -> probability of crossing its limits, before.")
    risk_after: dict[str, float] = Field(description="... and after the change.")
    evidence: Literal["controlled", "associational", "both", "time_model", "prior", "not_modelled"] = Field(
        description="What the ratio rests on: controlled comparisons, associations, both, the plan's clock only, "
                    "prior (nobody measured this change: the distribution of the measured changes' effects, checked "
                    "leave-one-study-out, wide), or not_modelled (no changed field is read by the forecast: no ratio).")
    studies: list[str] = Field(default_factory=list)
    disagreement: bool = Field(default=False, description="For some changed field, controlled and associational evidence disagree.")
    terms: list[TermEffect] = Field(default_factory=list)


class MitigationEffect(ChangeEffect):
    """The mitigation applied to the architecture (what-if): the change's ratios, and the largest layer's
    values before and after (the design's forecast moved by the change)."""

    applied: dict[str, Any] = Field(description="Architecture fields changed: field -> new value.")
    peak_abs_before: Interval
    peak_abs_after: Interval
    ratio_end_before: Interval
    ratio_end_after: Interval
    reduction: float = Field(description="Ranking score: -log10 of the peak ratio's pessimistic end (its value times one "
                             "sd up) + the risk drop on the target formats: an uncertain effect ranks below a sure one.")
    text: str


class Mitigation(BaseModel):
    id: str
    name: str
    category: str
    rank: int
    level: str = Field(description="strong | moderate | situational | informational | not_recommended")
    effective: bool = Field(description="Expected to reduce the risk for this architecture (level strong/moderate/situational).")
    why: str
    mechanism: str
    changes: list[str]
    expected_effect: dict[str, str]
    cost: str
    caveats: list[str]
    citations: list[CitationOut] = Field(min_length=1)
    motivating_layers: list[int]
    motivation: str
    unknown_fields: list[str] = Field(default_factory=list, description="Rule fields the request did not determine.")
    effect: MitigationEffect | None = Field(default=None, description="Predicted effect when the mitigation maps onto "
                                            "architecture fields (None: the forecast cannot represent it).")


class LineageMember(BaseModel):
    model: str
    params_B: float
    d_model: int
    n_layers: int
    moe: bool
    protocol: str
    peak_abs: float = Field(description="Its largest layer's peak |a| in that protocol (measured; a checkpoint series' "
                            "fitted asymptote).")
    measured_as: str


class LineageInfo(BaseModel):
    """The lineage the level leans on (``predictor.level``): its measured members and how the design differs."""

    name: str | None = Field(description="None: a new lineage (the between-lineage spread applies).")
    members: list[LineageMember] = Field(default_factory=list)
    nearest: str | None = None
    differences: list[str] = Field(default_factory=list, description="Fields where the design differs from the nearest member.")
    effect: float | None = Field(default=None, description="The factor the lineage's members put on the level, against "
                                 "the common terms alone.")
    text: str


class PredictResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    predictor: PredictorInfo
    architecture: str
    t_end: int
    summary: Summary
    layers: list[LayerForecast]
    precision: list[PrecisionRisk]
    applicability: list[ApplicabilityWarning]
    mitigations: list[Mitigation]
    notes: list[str] = Field(default_factory=list)
    lineage: LineageInfo | None = Field(default=None, description="The lineage the level leans on and its measured members.")
    precision_plan: PrecisionPlan | None = Field(default=None, description="Layers to keep in high precision for the "
                                                 "precision target, layers to monitor, and the plan's own risk.")
    inferred: list[str] = Field(default_factory=list, description="/predict_hf_config: fields inferred or defaulted.")
    architecture_input: Architecture | None = Field(default=None, description="/predict_hf_config: the converted architecture.")
    view: View = Field(default="compact", description="The view this answer is in: " + VIEW_HELP)


class VariantSummary(BaseModel):
    name: str
    architecture: str
    summary: Summary
    precision_at_risk: list[str]
    top_mitigations: list[str]
    applicability_fields: list[str]


class Difference(BaseModel):
    variant: str
    baseline: str
    changed_inputs: dict[str, list[Any]] = Field(description="field -> [baseline value, variant value]")
    effects: dict[str, list[Any]] = Field(description="summary quantity -> [baseline, variant] (each variant's own "
                                          "forecast: the prediction question)")
    effect: ChangeEffect | None = Field(default=None, description="What changing the baseline into the variant does "
                                        "(the intervention question): ratios with their own intervals and evidence.")
    bottom_line: str = Field(default="", description="The decision in one sentence: what the change does (the intervention), "
                             "or that it is not modelled.")
    text: list[str] = Field(description="The differences in words (the bottom line first).")


class CompareResponse(BaseModel):
    predictor: PredictorInfo
    baseline: str
    variants: list[VariantSummary]
    differences: list[Difference]


class NowcastResponse(PredictResponse):
    """The ``/predict`` answer from the updated forecast, plus what the observations did."""

    nowcast: NowcastInfo
    nowcast_layers: list[LayerNowcast] = Field(description="Per layer: observed vs prior and updated forecast, "
                                               "deviation (max |z|), left_band.")
