import pytest

from janusgen.evaluation.significance import paired_bootstrap


def test_paired_bootstrap_finds_a_real_difference_and_not_a_fake_one():
    refs = [f"the {w} sat on the mat near the door" for w in ("cat", "dog", "bird", "cow")] * 20
    good = list(refs)
    bad = [r.replace("sat on", "on").replace("near the door", "") for r in refs]
    real = paired_bootstrap(("good", good), ("bad", bad), refs, samples=200)
    assert real.delta > 20 and real.p_value < 0.05
    same = paired_bootstrap(("a", bad), ("b", list(bad)), refs, samples=200)
    assert same.delta == 0 and same.p_value > 0.5
    with pytest.raises(ValueError, match="hypotheses"):
        paired_bootstrap(("a", good[:3]), ("b", bad), refs)
