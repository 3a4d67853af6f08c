"""Churn model: training (scikit-learn logistic regression, versioned in PostgreSQL) and scoring."""

from __future__ import annotations

from typing import Any

from tutormax.data import churn as repo
from tutormax.data.db import note_read_source
from tutormax.data.resources import Resources
from tutormax.domain import ChurnModel, ChurnRisk
from tutormax.services.tutors import get_tutor, tutor_key

MODEL_KEY = "churn:model"
#: Fewer labelled tutors than this (or only one class) and training is skipped.
MIN_SAMPLES = 4


def _fit(rows: list[dict[str, Any]]) -> dict[str, Any]:
    # scikit-learn is imported here, not at module level: only the worker trains, and the API
    # processes should not pay its import time and memory.
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x = np.array([[float(row[name]) for name in repo.FEATURES] for row in rows])
    y = np.array([1 if row["churned"] else 0 for row in rows])
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(class_weight="balanced", max_iter=1000).fit(scaler.transform(x), y)
    accuracy = float(model.score(scaler.transform(x), y))
    return {
        "means": [float(v) for v in scaler.mean_],
        "scales": [float(v) if v else 1.0 for v in scaler.scale_],
        "coefficients": [float(v) for v in model.coef_[0]],
        "intercept": float(model.intercept_[0]),
        "metrics": {"train_accuracy": round(accuracy, 4), "samples": float(len(rows)), "churned": float(y.sum())},
    }


async def train_model(r: Resources) -> dict[str, object]:
    """Train on every tutor (left = churned) and store the model as the next version."""
    async with r.db.read() as conn:
        rows = await repo.features(conn)
    churned = sum(1 for row in rows if row["churned"])
    if len(rows) < MIN_SAMPLES or churned == 0 or churned == len(rows):
        return {"status": "skipped", "reason": "need tutors who stayed and tutors who left", "samples": len(rows)}
    fitted = _fit(rows)
    async with r.db.primary() as conn:
        version = await repo.store_model(conn, **fitted)
    await r.cache.invalidate(MODEL_KEY)
    return {"status": "trained", "version": version, **fitted["metrics"]}


async def _latest_model(r: Resources) -> ChurnModel | None:
    cached = await r.cache.get(MODEL_KEY)
    if cached is not None:
        return None if cached == "null" else ChurnModel.model_validate_json(cached)
    model = await r.db.fetch(repo.latest_model)
    await r.cache.put(MODEL_KEY, model.model_dump_json() if model else "null", overwrite=False)
    return model


async def churn_risk(r: Resources, tutor_id: int) -> ChurnRisk:
    """The latest model's churn probability for one tutor (risk null before the first training)."""
    await get_tutor(r, tutor_id)
    model = await _latest_model(r)
    min_lsn = await r.cache.written_lsn(tutor_key(tutor_id))
    rows = await r.db.fetch(lambda conn: repo.features(conn, tutor_id), min_lsn)
    features = {name: float(rows[0][name]) for name in repo.FEATURES} if rows else {}
    if model is None:
        return ChurnRisk(tutor_id=tutor_id, risk=None, model_version=None, features=features)
    note_read_source("model")
    return ChurnRisk(
        tutor_id=tutor_id, risk=round(model.predict(features), 4), model_version=model.version, features=features
    )
