import jax
import numpy as np
import pytest
from cluster_data import clusters, neighbour_purity

from topojax.layout import METHODS, get_method
from topojax.layout.fill import fill_layout, fill_shape
from topojax.render import render


def round_cloud(n: int = 400, seed: int = 0) -> np.ndarray:
    """Points filling a disk evenly (like a t-SNE or UMAP map)."""
    rng = np.random.default_rng(seed)
    radius = np.sqrt(rng.uniform(size=n)) * 0.4
    angle = rng.uniform(0, 2 * np.pi, size=n)
    return np.stack([0.5 + radius * np.cos(angle), 0.5 + radius * np.sin(angle)], 1)


def drawn_fraction(coords: np.ndarray) -> float:
    """Fraction of the square's pixels inside the layout's convex hull."""
    image = np.asarray(render(coords, np.ones((1, len(coords))), resolution=64))
    return float(np.isfinite(image).mean())


def map_neighbours(coords: np.ndarray, k: int) -> np.ndarray:
    d = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    return np.argsort(d, axis=1)[:, :k]


def test_registered_and_chained():
    assert METHODS["fill"] is fill_layout
    x, labels = clusters(1)
    coords = np.asarray(get_method("pca+fill")(x, key=jax.random.key(0)).coords)
    assert coords.shape == (len(x), 2) and coords.min() >= 0 and coords.max() <= 1
    assert neighbour_purity(coords, labels) == 1.0


def test_square_fill_reaches_the_corners_and_keeps_neighbours():
    cloud = round_cloud()
    filled = np.asarray(fill_shape(cloud).coords)
    # A disk drawn in its bounding square leaves ~21 % blank; filled, ~none.
    assert drawn_fraction(cloud) < 0.82
    assert drawn_fraction(filled) > 0.95
    # Every neuron stays on its ray from the centroid of the (rescaled) input.
    unit = (cloud - cloud.min(axis=0)) / np.ptp(cloud, axis=0)
    centre = unit.mean(axis=0)
    before = np.arctan2(*(unit - centre).T[::-1])
    after = np.arctan2(*(filled - centre).T[::-1])
    wrapped = np.angle(np.exp(1j * (after - before)))
    assert np.abs(wrapped).max() < 1e-3
    # ... and most map neighbours stay neighbours.
    kept = [
        len(set(a) & set(b)) / 10
        for a, b in zip(
            map_neighbours(cloud, 10), map_neighbours(filled, 10), strict=True
        )
    ]
    assert np.mean(kept) > 0.75


@pytest.mark.parametrize("power", [0.0, 32.0])
def test_power_sets_how_deep_the_stretch_reaches(power):
    cloud = round_cloud()
    filled = np.asarray(fill_shape(cloud, power=power).coords)
    assert drawn_fraction(filled) > 0.95
    unit = (cloud - cloud.min(axis=0)) / np.ptp(cloud, axis=0)
    centre = unit.mean(axis=0)
    depth = np.linalg.norm(unit - centre, axis=1)
    inner = depth < 0.5 * depth.max()
    # The inner half stays put under the rim stretch; p = 0 scales it by
    # 1-1.4 (more towards the corners). Measured medians 0.015 and ~0.
    moved = np.linalg.norm(filled - unit, axis=1)
    if power == 0.0:
        assert np.median(moved[inner]) > 0.01
    else:
        assert moved[inner].max() < 0.005
    # Either way the order along each ray is kept: no neuron jumps over another
    # at the same angle (checked as: radius order within narrow sectors).
    angle = np.arctan2(*(unit - centre).T[::-1])
    new_depth = np.linalg.norm(filled - centre, axis=1)
    for lo in np.linspace(-np.pi, np.pi, 90, endpoint=False):
        sector = np.flatnonzero((angle >= lo) & (angle < lo + 2 * np.pi / 90))
        order = sector[np.argsort(depth[sector])]
        assert np.all(np.diff(new_depth[order]) > -0.02)


def test_rim_stretch_keeps_more_neighbours_than_the_whole_stretch():
    cloud = round_cloud()
    neighbours = map_neighbours(cloud, 10)

    def kept(power):
        filled = np.asarray(fill_shape(cloud, power=power).coords)
        pairs = zip(neighbours, map_neighbours(filled, 10), strict=True)
        return np.mean([len(set(a) & set(b)) / 10 for a, b in pairs])

    # Measured: 0.88 (whole layout stretched) and 0.95 (rim only).
    assert kept(32.0) > kept(0.0) + 0.05


def test_disk_fill_reaches_the_inscribed_circle():
    cloud = round_cloud()[:, ::-1] * np.array([0.5, 1.0])  # an off-centre ellipse
    filled = np.asarray(fill_shape(cloud, shape="disk").coords)
    radius = np.linalg.norm(filled - 0.5, axis=1)
    assert radius.max() <= 0.5 + 1e-5
    assert radius.max() > 0.49
    # The outline is near the circle in every direction.
    angle = np.arctan2(*(filled - 0.5).T[::-1])
    for lo in np.linspace(-np.pi, np.pi, 8, endpoint=False):
        sector = (angle >= lo) & (angle < lo + np.pi / 4)
        assert radius[sector].max() > 0.45


@pytest.mark.parametrize("n", [1, 2, 3])
def test_tiny_and_degenerate_layouts(n):
    coords = np.asarray(fill_shape(np.zeros((n, 2))).coords)
    assert coords.shape == (n, 2) and np.isfinite(coords).all()
    line = np.stack([np.linspace(0, 1, 7), np.zeros(7)], axis=1)
    assert np.isfinite(np.asarray(fill_shape(line).coords)).all()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: fill_shape(round_cloud(), shape="circle"), "unknown shape"),
        (lambda: fill_shape(np.zeros((4, 3))), "shape \\(n_neurons, 2\\)"),
        (lambda: fill_shape(np.full((4, 2), np.nan)), "finite"),
        (
            lambda: fill_layout(
                np.ones((4, 3)), key=jax.random.key(0), init=np.ones(4)
            ),
            "init must have shape",
        ),
        (
            lambda: fill_layout(np.ones((4, 3)), key=jax.random.key(0), shape="hex"),
            "unknown shape",
        ),
        (lambda: fill_shape(round_cloud(), power=-1.0), "power must be"),
        (lambda: fill_shape(round_cloud(), power=float("nan")), "power must be"),
    ],
)
def test_bad_input_raises(call, message):
    with pytest.raises(ValueError, match=message):
        call()
