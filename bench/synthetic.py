"""A synthetic layer with a known topography, for layout benchmarks.

Neurons sit on a 2-D sheet (their true coordinates). Each stimulus is a smooth
random field on the sheet: a few Gaussian bumps, placed around its group's centre
(groups play the role of classes). A neuron has a Gaussian receptive field at its
position, so its response to a stimulus is the field smoothed by that Gaussian
(again a sum of Gaussians), plus noise, through a ReLU. Neighbours on the sheet
therefore respond alike, and a good layout puts them next to each other:
`ground_truth_recall(true_coords, coords)` measures how well it does.

Layout inputs, as in the paper:
- ``naps``: ``(n_neurons, n_groups)`` group means minus their mean over groups.
- ``raw``: ``(n_neurons, n_samples)`` activations on every stimulus.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class SyntheticLayer:
    """Activations of a sheet of neurons and their true positions.

    Attributes:
        naps: ``(n_neurons, n_groups)`` float32 NAP profiles (layout input).
        raw: ``(n_neurons, n_samples)`` float32 activations.
        true_coords: ``(n_neurons, 2)`` float32 positions on the unit sheet.
        group_ids: ``(n_samples,)`` int group of each stimulus.
    """

    naps: np.ndarray
    raw: np.ndarray
    true_coords: np.ndarray
    group_ids: np.ndarray


def synthetic_layer(
    n_neurons: int,
    *,
    seed: int = 0,
    n_groups: int = 10,
    samples_per_group: int = 40,
    n_bumps: int = 3,
    bump_width: float = 0.12,
    receptive_width: float = 0.05,
    group_spread: float = 0.15,
    noise: float = 0.05,
) -> SyntheticLayer:
    """Simulate one layer; deterministic for a seed.

    Args:
        n_neurons: neurons on the sheet.
        seed: NumPy seed.
        n_groups: stimulus groups (classes).
        samples_per_group: stimuli per group.
        n_bumps: Gaussian bumps per stimulus.
        bump_width: standard deviation of a bump, in sheet units.
        receptive_width: standard deviation of a neuron's receptive field.
        group_spread: spread of a group's bumps around its centre.
        noise: standard deviation of the response noise.

    Returns:
        `SyntheticLayer`.
    """
    rng = np.random.default_rng(seed)
    positions = rng.random((n_neurons, 2))
    centres = 0.15 + 0.7 * rng.random((n_groups, 2))
    group_ids = np.repeat(np.arange(n_groups), samples_per_group)
    n_samples = group_ids.size
    bumps = centres[group_ids][:, None, :] + group_spread * rng.normal(
        size=(n_samples, n_bumps, 2)
    )
    amplitudes = rng.uniform(0.5, 1.5, size=(n_samples, n_bumps))
    width_sq = bump_width**2 + receptive_width**2
    response = np.zeros((n_neurons, n_samples))
    for b in range(n_bumps):
        sq = ((positions[:, None, :] - bumps[None, :, b, :]) ** 2).sum(-1)
        response += amplitudes[None, :, b] * np.exp(-sq / (2 * width_sq))
    response += noise * rng.normal(size=response.shape)
    raw = np.maximum(response - 0.1, 0.0)
    means = np.stack([raw[:, group_ids == g].mean(axis=1) for g in range(n_groups)])
    naps = (means - means.mean(axis=0, keepdims=True)).T
    return SyntheticLayer(
        naps=naps.astype(np.float32),
        raw=raw.astype(np.float32),
        true_coords=positions.astype(np.float32),
        group_ids=group_ids,
    )
