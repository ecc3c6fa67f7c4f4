import jax.numpy as jnp
import numpy as np
import pytest

from topojax import align
from topojax.layout.base import Layout


def _rotation(degrees):
    t = np.deg2rad(degrees)
    return np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])


@pytest.fixture
def coords():
    return np.random.default_rng(0).uniform(size=(50, 2)).astype(np.float32)


def test_procrustes_recovers_rotated_reflected_scaled_copy(coords):
    moved = 2.7 * (coords * np.array([-1.0, 1.0])) @ _rotation(73) + np.array(
        [3.0, -1.5]
    )
    result = align.procrustes(moved, coords)
    assert float(result.rmsd) < 1e-5
    np.testing.assert_allclose(result.aligned, coords, atol=1e-5)
    assert bool(result.reflected)
    np.testing.assert_allclose(float(result.scale), 1 / 2.7, rtol=1e-5)
    # the transform applies to other points the same way
    np.testing.assert_allclose(
        result.apply(jnp.asarray(moved[:5])), coords[:5], atol=1e-5
    )


def test_procrustes_without_reflection_cannot_undo_a_mirror(coords):
    moved = (coords * np.array([-1.0, 1.0])) @ _rotation(20)
    proper = align.procrustes(moved, coords, reflection=False)
    assert not bool(proper.reflected)
    assert float(proper.rmsd) > 0.05
    rotated = coords @ _rotation(20)
    assert float(align.procrustes(rotated, coords, reflection=False).rmsd) < 1e-5


def test_procrustes_without_scale_keeps_size(coords):
    result = align.procrustes(3.0 * coords, coords, scale=False)
    assert float(result.scale) == 1.0
    assert float(result.rmsd) > 0.1


def test_procrustes_weights_ignore_outliers(coords):
    target = coords.copy()
    target[:5] += 10.0  # outliers with zero weight
    weights = np.ones(len(coords))
    weights[:5] = 0
    moved = coords @ _rotation(40) + 0.3
    result = align.procrustes(moved, target, weights=weights)
    np.testing.assert_allclose(result.aligned[5:], coords[5:], atol=1e-5)


def test_procrustes_degenerate_and_errors():
    one = align.procrustes(np.zeros((1, 2)), np.ones((1, 2)))
    np.testing.assert_allclose(one.aligned, np.ones((1, 2)), atol=1e-6)
    with pytest.raises(ValueError, match="has 4 neurons; expected 3"):
        align.procrustes(np.zeros((3, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"\(n_neurons, 2\)"):
        align.procrustes(np.zeros((3, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="weights"):
        align.procrustes(np.zeros((3, 2)), np.zeros((3, 2)), weights=[1, -1, 1])


def test_procrustes_jit_no_recompile(coords):
    align.procrustes(coords, coords[::-1])
    size = align._procrustes._cache_size()
    align.procrustes(coords + 1, coords)
    assert align._procrustes._cache_size() == size


def test_align_sequence_same_neurons(coords):
    ref = Layout(jnp.asarray(coords), "pca")
    moved = Layout(jnp.asarray(1 - coords[:, ::-1]), "pca")  # a reflection
    out = align.align_sequence([moved, ref])
    np.testing.assert_allclose(out[1].coords, coords)
    np.testing.assert_allclose(
        out[0].coords, align.rescale_unit(jnp.asarray(coords)), atol=1e-5
    )


def _smooth_colors(coords):
    x, y = coords[:, 0], coords[:, 1]
    return np.stack([x, y, np.sin(3 * x), np.cos(2 * y)], 1).astype(np.float32)


def test_rotation_search_finds_the_rotation(coords):
    ref = np.asarray(align.rescale_unit(jnp.asarray(coords)))
    colors = _smooth_colors(ref)
    turned = np.asarray(align.rotate(jnp.asarray(ref), jnp.float32(-90.0)))
    exact = align.rotation_search(turned, colors, ref, colors, rescale=False)
    assert exact.scores.shape == (360,)
    assert abs(float(exact.angle) - 90.0) <= 2.0
    np.testing.assert_allclose(exact.coords, ref, atol=0.05)
    # the paper's variant rescales every candidate, which shifts its optimum
    paper = align.rotation_search(turned, colors, ref, colors)
    assert abs(float(paper.angle) - 90.0) <= 20.0


def test_rotation_search_with_reflection_in_chunks(coords):
    ref = np.asarray(align.rescale_unit(jnp.asarray(coords)))
    colors = _smooth_colors(ref)
    mirrored = ref * np.array([-1.0, 1.0], np.float32)
    plain = align.rotation_search(mirrored, colors, ref, colors, rescale=False)
    # 90 angles per chunk (memory bound) and reflections
    both = align.rotation_search(
        mirrored,
        colors,
        ref,
        colors,
        reflection=True,
        rescale=False,
        max_batch_elements=90 * 50 * 50,
    )
    assert both.scores.shape == (720,)
    # equal up to float rounding; the median threshold is discontinuous, so a
    # rounding-level change can move one of the 2500 pairs across it (~4e-4)
    np.testing.assert_allclose(both.scores[:360], plain.scores, atol=2e-3)
    assert bool(both.reflected)
    assert float(both.scores.max()) > float(plain.scores.max())
    np.testing.assert_allclose(both.coords, ref, atol=0.05)


def test_align_by_profiles_across_layers(coords):
    # two "layers" of 50 neurons each (4 groups): the second layer's neurons are
    # noisy copies of the first's, in another order, at rotated places
    rng = np.random.default_rng(0)
    ref = np.asarray(align.rescale_unit(jnp.asarray(coords)))
    ref_profiles = _smooth_colors(ref)
    order = rng.permutation(50)
    other = (ref[order] - 0.5) @ _rotation(130) + 0.5
    other = (other + rng.normal(size=(50, 2)) * 0.02).astype(np.float32)
    profiles = ref_profiles[order] + rng.normal(size=(50, 4)).astype(np.float32) * 0.02
    aligned = align.align_by_profiles(
        other, profiles, ref, ref_profiles, temperature=0.05
    )
    target = ref[order]
    unaligned = np.asarray(align.rescale_unit(jnp.asarray(other)))
    before = np.sqrt(((unaligned - target) ** 2).sum(1).mean())
    after = np.sqrt(((np.asarray(aligned.coords) - target) ** 2).sum(1).mean())
    assert after < 0.1 < before
    with pytest.raises(ValueError, match="same groups"):
        align.align_by_profiles(other, profiles[:, :3], ref, ref_profiles)


def test_align_layers_dispatch_and_errors(coords):
    # same shapes as the tests above (50 neurons, 4 groups): compiled once
    ref = np.asarray(align.rescale_unit(jnp.asarray(coords)))
    turned = np.asarray(align.rotate(jnp.asarray(ref), jnp.float32(-90.0)))
    layouts = {"a": Layout(jnp.asarray(ref), "pca"), "b": Layout(turned, "pca")}
    profiles = {"a": _smooth_colors(ref), "b": _smooth_colors(ref)}
    for method in align.LAYER_ALIGNMENTS:
        out = align.align_layers(layouts, profiles, method=method)
        assert out["a"] is layouts["a"]
        assert out["b"].coords.shape == (50, 2)
    exact = align.align_layers(layouts, profiles, method="profiles")["b"].coords
    np.testing.assert_allclose(exact, ref, atol=1e-2)
    with pytest.raises(ValueError, match="unknown alignment method 'procrustes'"):
        align.align_layers(layouts, profiles, method="procrustes")
    with pytest.raises(ValueError, match="reference layer 'c' not in"):
        align.align_layers(layouts, profiles, reference="c")


def test_rotation_search_and_profile_alignment_do_not_recompile(coords):
    colors = _smooth_colors(coords)
    align.rotation_search(coords, colors, coords, colors)
    align.align_by_profiles(coords, colors, coords, colors)
    sizes = (align._rotation_search._cache_size(), align._profile_anchors._cache_size())
    moved = coords[::-1] + 0.1
    align.rotation_search(moved, colors + 1, coords, colors, rescale=False)
    align.align_by_profiles(moved, colors + 1, coords, colors)
    after = (align._rotation_search._cache_size(), align._profile_anchors._cache_size())
    assert after == sizes
