"""Every meter kind the registry declares is really recorded by its producers.

Fails when a priced meter kind (:data:`fedhub.limits.PRICES`) has no producer, when a
producer declared in :data:`fedhub.limits.METER_KINDS` has no exercise here, or when
running a producer once does not record the kinds the registry says it records. The rest
of the registry's contract is ``test_limits_registry.py``.
"""

from __future__ import annotations

import pkgutil

import pytest

from fedhub import limits, metering
from tests.foundation.meter_exercises import EXERCISES, recorded_kinds, run_experiment

PRODUCERS = sorted({p for m in limits.METER_KINDS for p in m.producers})


def test_every_priced_kind_has_a_producer_and_every_producer_an_exercise():
    priced = {line.kind for line in limits.PRICES}
    for kind in priced:
        assert kind in limits.KINDS and limits.KINDS[kind].producers, f"{kind}: no producer"
    assert set(PRODUCERS) == set(EXERCISES)
    for ref in PRODUCERS:
        assert callable(pkgutil.resolve_name(ref)), ref


@pytest.mark.parametrize("producer", PRODUCERS)
def test_each_producer_records_the_kinds_the_registry_says(producer, url, tmp_path, monkeypatch):
    declared = {m.kind for m in limits.METER_KINDS if producer in m.producers}
    EXERCISES[producer](url, tmp_path, monkeypatch)
    recorded = recorded_kinds(url)
    assert declared <= recorded, f"{producer} did not record {declared - recorded}"


def test_the_experiments_meter_counts_once_per_run(url, tmp_path, monkeypatch):
    from fedhub import db

    run = run_experiment(url, tmp_path, monkeypatch)
    with db.session_scope(url) as s:
        assert metering.used(s, "acme", "experiments_per_month", run.created_at) == 1.0
