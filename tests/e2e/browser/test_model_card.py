"""The model card page in a real browser: the calibration and the measured figures, in words."""

from __future__ import annotations

import numpy as np
import pytest
from playwright.sync_api import expect

from matching.faces import MODEL_ID
from service.calibration.service import publish_evaluation, store_calibration
from tests.e2e.browser.conftest import screenshot, sign_in
from tests.support.reports import synthetic_report

pytestmark = [pytest.mark.browser]


def test_a_reviewer_reads_the_model_card(live, page):
    with live.db() as session:
        store_calibration(
            session,
            model_id=MODEL_ID,
            model_version="v-test",
            genuine=np.linspace(0.2, 0.6, 50),
            impostor=np.linspace(0.5, 1.0, 1000),
            target_fmr=1e-3,
            top_k=10,
            dataset={"manifest_sha256": "ab" * 32, "photos": 60, "identities": 12},
            actor_id=None,
            # 0-1 years apart has enough different-person pairs for its own threshold; 5-9 not.
            gap_pairs={
                "0-1": (np.linspace(0.2, 0.5, 30), np.linspace(0.45, 1.0, 1000)),
                "5-9": (np.linspace(0.3, 0.7, 20), np.linspace(0.6, 1.0, 300)),
            },
        )
        publish_evaluation(session, report=synthetic_report(MODEL_ID), actor_id=None)
    reviewer = live.user("reviewer", organisation_id=live.organisation())
    sign_in(page, reviewer)
    page.get_by_role("link", name="Model card").first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Model card")
    expect(page.get_by_role("note")).to_contain_text("aged 6-9: 100 % of 16 searches")
    ages = page.get_by_role("table", name="Right person ranked first, by age at photo")
    expect(ages.get_by_role("row", name="Aged 6-9")).to_contain_text("100 %")
    expect(ages.get_by_role("row", name="Aged 0-2")).to_contain_text("not measurable")
    expect(page.get_by_text("Not calibrated yet")).to_have_count(0)
    expect(page.get_by_role("heading", name="Threshold by years between the two photos")).to_be_visible()
    expect(page.get_by_role("row", name="5-9")).to_contain_text("Not calibrated: needs 1000 different-person pairs")
    expect(page.get_by_text("Counted end to end")).to_be_visible()
    screenshot(page, "model-card")
