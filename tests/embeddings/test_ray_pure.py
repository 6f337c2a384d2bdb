"""The Ray engine's pure parts (no Ray needed): mergeable index types and encoder placement."""

import pytest

from embeddings.ray_engine.embed import encoder_placement
from embeddings.ray_engine.index_build import check_mergeable


@pytest.mark.parametrize("factory", ["HNSW32,Flat", "Flat", "PQ8", "auto"])
def test_unmergeable_types_are_refused_naming_alternatives(factory):
    with pytest.raises(ValueError) as err:
        check_mergeable(factory, 32, "ip")
    assert "IVF1024,Flat" in str(err.value) and "IVF4096,PQ32x8" in str(err.value)
    if factory != "auto":
        assert "engine='local'" in str(err.value)


def test_ivf_types_are_accepted_and_untrained():
    for factory in ("IVF16,Flat", "IVF16,SQ8", "OPQ8_32,IVF16,PQ8x4", "IVF16,PQ8x4"):
        assert not check_mergeable(factory, 32, "l2").is_trained


def test_bad_factory_or_metric_named():
    with pytest.raises(ValueError, match="cannot build"):
        check_mergeable("IVF16,Nonsense", 32, "ip")
    with pytest.raises(ValueError, match="metric"):
        check_mergeable("IVF16,Flat", 32, "cosine")


def test_encoder_placement():
    assert encoder_placement("cpu", 4) == ("cpu", 0)
    assert encoder_placement("auto", 0) == ("cpu", 0)
    assert encoder_placement("auto", 2) == ("cuda", 1)
    assert encoder_placement("cuda:1", 2) == ("cuda", 1)
    with pytest.raises(RuntimeError, match="no GPU"):
        encoder_placement("cuda", 0)
    with pytest.raises(ValueError, match="device"):
        encoder_placement("tpu", 0)


def test_actor_cpus_leave_room_for_readers():
    from embeddings.ray_engine.embed import actor_cpus

    assert actor_cpus(16, 2) == 1.0
    assert actor_cpus(2, 2) == 0.75  # 2 x 0.75 + one 0.5-CPU reader = 2 CPUs
    assert actor_cpus(2, 1) == 1.0
    assert actor_cpus(1, 8) == 0.1
