"""Attribution lands where the demo generator planted the grade-4 biology, for every head that attributes.

The generator (demo/biology.py, demo/tissue.py) gives every grade-4 tumour an enhancing rim
around a necrotic core, which lower grades lack (G2 never enhances, G3 rarely), and gives
grade-4 specimens their necrosis and microvascular-proliferation patches, which no G2/G3
specimen shows. So on held-out grade-4 cases:
- habitats: in grade-4 cases whose mask has an enhancing rim or necrotic core (a few grade-4
  cases show neither, so nothing there can be found), the habitat whose masking lowers the
  G4 log-odds most (occlusion) should be one of them. Chance = mean over cases of (driving
  habitats present / habitats present), about 0.67; we ask for >= 0.9.
- patches: the 5 patches with the highest attention should be necrosis/MVP. Chance = their
  mean share of the bag (~0.25); we ask for precision >= 1.8 x chance.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fusion_models.features import HABITATS
from fusion_models.fusion_heads import HeadConfig, collate, fusion_head_names
from fusion_models.fusion_heads.attribution import habitat_occlusion, log_odds
from fusion_models.fusion_heads.trainer import TrainSettings, train_head
from fusion_models.neural_family import GLIOMA_TASKS
from schemas.common import TISSUE_PATTERNS

TASKS = tuple(t for t in GLIOMA_TASKS if t.name in ("grade", "risk"))
G4 = 2
DRIVING_HABITATS = [HABITATS.index("enhancing"), HABITATS.index("necrotic_core")]
DRIVING_PATTERNS = [TISSUE_PATTERNS.index("necrosis"), TISSUE_PATTERNS.index("microvascular_proliferation")]
TOP_PATCHES = 5
HABITAT_HIT_RATE = 0.9
PATCH_LIFT = 1.8


@pytest.fixture(scope="module")
def cohorts(kb):
    from demo.head_data import demo_head_data

    train = demo_head_data(200, seed=11, kb=kb, tasks=TASKS, bank_tiles_per_pattern=32)
    test = demo_head_data(100, seed=12, kb=kb, tasks=TASKS, bank_tiles_per_pattern=32)
    return train, test


@pytest.fixture(scope="module")
def trained(cohorts):
    train, _ = cohorts
    x, y = collate(train.cases), train.targets
    fit, stop = np.arange(160), np.arange(160, 200)
    cache = {}

    def get(name: str):
        if name not in cache:
            cache[name], _ = train_head(
                HeadConfig(head=name, tasks=TASKS), (x.select(fit), y.select(fit)), (x.select(stop), y.select(stop)),
                TrainSettings(epochs=20), seed=0,
            )
        return cache[name]

    return get


@pytest.mark.parametrize("name", fusion_head_names())
def test_top_habitat_is_the_enhancing_rim_or_necrotic_core(name, cohorts, trained):
    _, test = cohorts
    x = collate(test.cases)
    driving = x.region_mask[:, -1, DRIVING_HABITATS].any(1)
    cases = [i for i, g in enumerate(test.grades) if g == "G4" and bool(driving[i])]
    assert len(cases) >= 10
    drops = habitat_occlusion(trained(name), x.select(cases), lambda out: log_odds(out["grade"], G4))
    present = x.region_mask[cases, -1]
    top = torch.where(present, drops, torch.tensor(-torch.inf)).argmax(1)
    hit_rate = float(np.isin(top.numpy(), DRIVING_HABITATS).mean())
    chance = float(np.mean([np.isin(np.flatnonzero(p), DRIVING_HABITATS).mean() for p in present.numpy()]))
    assert hit_rate >= HABITAT_HIT_RATE > chance, f"{name}: {hit_rate:.2f} (chance {chance:.2f})"


@pytest.mark.parametrize("name", fusion_head_names())
def test_top_attention_patches_are_necrosis_or_vascular_proliferation(name, cohorts, trained):
    _, test = cohorts
    x = collate(test.cases)
    head = trained(name)
    if not head.config.modalities.count("pathology"):
        pytest.skip(f"{name} reads no pathology")
    with torch.no_grad():
        attention = head.eval()(x).interpretation.patch_attention
    precision, chance = [], []
    for i, grade in enumerate(test.grades):
        codes = test.targets.patterns[i][x.patch_mask[i]].numpy()
        if grade != "G4" or len(codes) < 2 * TOP_PATCHES:
            continue
        top = torch.topk(attention[i, : len(codes)], TOP_PATCHES).indices.numpy()
        precision.append(np.isin(codes[top], DRIVING_PATTERNS).mean())
        chance.append(np.isin(codes, DRIVING_PATTERNS).mean())
    assert len(precision) >= 10
    lift = np.mean(precision) / np.mean(chance)
    assert lift >= PATCH_LIFT, f"{name}: precision {np.mean(precision):.2f}, chance {np.mean(chance):.2f}"
