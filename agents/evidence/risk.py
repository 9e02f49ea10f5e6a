"""Risk as a tumour board reads it: estimated 2-year survival, the band it falls in, the score's scale.

The fusion models' risk heads give P(death by 24 months) and a Cox linear predictor.
The report states the survival side ("estimated 2-year survival"), and the risk group
is the band of that same probability, so the group can never disagree with the number
printed beside it. The bands are defined here and nowhere else.
"""

from __future__ import annotations

import math

from pydantic import BaseModel

from schemas.fusion import TaskPrediction
from schemas.report import Conclusion

SURVIVAL_LABEL = "event_free_at_24m"  # the risk heads' label for "alive at 24 months"


class SurvivalBands(BaseModel):
    """Cut points on estimated 2-year survival.

    Chosen so that the textbook cases fall where a board expects them: IDH-wild-type
    glioblastoma (2-year survival about 15-30% under standard therapy) is high risk,
    IDH-mutant grade 2 glioma (over 90%) is low risk.
    """

    low_risk_from: float = 0.75  # survival >= this: low risk
    high_risk_below: float = 0.40  # survival < this: high risk; between the two: intermediate

    def group(self, survival: float) -> str:
        if survival >= self.low_risk_from:
            return "low"
        return "high" if survival < self.high_risk_below else "intermediate"


class RiskScale(BaseModel):
    """What the risk score is: a Cox linear predictor (log hazard) of the model that produced it.

    A difference of 1 between two cases is a hazard ratio of e (about 2.7); the zero point is
    the model's own, so scores compare only between cases scored by the same model.
    """

    horizon_years: int = 2
    score_step: float = 1.0
    hazard_ratio_per_step: float = round(math.e, 1)


SURVIVAL_BANDS = SurvivalBands()
RISK_SCALE = RiskScale()


def estimated_survival(probabilities: dict[str, float]) -> float | None:
    """Estimated 2-year survival, if these are a risk head's probabilities."""
    return probabilities.get(SURVIVAL_LABEL)


def risk_group(prediction: TaskPrediction) -> str | None:
    """The band of the prediction's estimated 2-year survival; None for a task without one."""
    survival = estimated_survival(prediction.probabilities)
    return None if survival is None else SURVIVAL_BANDS.group(survival)


def conclusion_survival(conclusion: Conclusion) -> float | None:
    return estimated_survival(conclusion.class_probabilities)
