"""Profiles across processes: two CPU processes on localhost vs one process."""

import dataclasses
import importlib
import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from topojax import LayerProfile, array_batches, profile
from topojax.distributed import (
    _describe,
    _first_mismatch,
    combine_profiles,
    process_shard,
)

GROUPS = ("zero", "one", "two", "three")  # "two" never occurs: an empty group
N_INPUTS = 37  # odd: the two shares differ in size
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_data():
    """Inputs, group ids and a fixed random dense layer (the same in every process)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N_INPUTS, 6)).astype(np.float32)
    group_ids = rng.choice([0, 1, 3], size=N_INPUTS).astype(np.int32)
    weights = rng.normal(size=(6, 6)).astype(np.float32)
    return x, group_ids, weights


def make_capture(weights):
    def capture_fn(x):
        hidden = jax.nn.relu(x @ weights)
        # A second layer with a 2-D unit shape, like a (tiny) conv layer.
        return {"dense": hidden, "conv": hidden.reshape(-1, 3, 2)}

    return capture_fn


# Runs in each of the two processes: argv = port, process id, output .npz.
WORKER = """
import json, sys
import jax
import numpy as np

port, process_id, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(
    coordinator_address=f"127.0.0.1:{port}",
    num_processes=2,
    process_id=process_id,
    initialization_timeout=60,
)
sys.path.insert(0, "tests")
from test_distributed import GROUPS, make_capture, make_data
import dataclasses
from topojax import array_batches, combine_profiles, process_shard, profile

x, group_ids, weights = make_data()
shard = process_shard(len(x))
local = profile(
    make_capture(weights), array_batches(x[shard], group_ids[shard], 8), GROUPS
)
combined = combine_profiles(local)

# Process 1 renames a group: both processes must raise the same error.
renamed = dict(local)
if process_id == 1:
    renamed["conv"] = dataclasses.replace(
        local["conv"], group_names=("zero", "one", "TWO", "three")
    )
try:
    combine_profiles(renamed)
    mismatch = "no error"
except ValueError as error:
    mismatch = str(error)

arrays = {}
for name, prof in combined.items():
    arrays[f"{name}.sums"] = np.asarray(prof.sums)
    arrays[f"{name}.counts"] = np.asarray(prof.counts)
meta = {
    "process_count": jax.process_count(),
    "shard": [shard.start, shard.stop],
    "layers": list(combined),
    "names": {name: [p.layer, list(p.group_names)] for name, p in combined.items()},
    "mismatch": mismatch,
}
np.savez(out, meta=json.dumps(meta), **arrays)
jax.distributed.shutdown()
"""


def gloo_available() -> bool:
    # jaxlib builds without gloo (e.g. some non-Linux wheels) lack this factory.
    jaxlib_ext = importlib.import_module("jaxlib._jax")
    return hasattr(jaxlib_ext, "make_gloo_tcp_collectives")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_two_processes(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
    env.pop("XLA_FLAGS", None)  # one CPU device per process
    port = free_port()
    outs = [tmp_path / f"process{i}.npz" for i in range(2)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(port), str(i), str(out)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, out in enumerate(outs)
    ]
    logs = []
    try:
        for worker in workers:
            _, stderr = worker.communicate(timeout=120)
            logs.append(stderr)
    except subprocess.TimeoutExpired:
        for worker in workers:
            worker.kill()
            worker.communicate()
        pytest.fail("a worker process did not finish within 120 s")
    for i, (worker, log) in enumerate(zip(workers, logs, strict=True)):
        assert worker.returncode == 0, f"process {i} failed:\n{log[-3000:]}"
    return [np.load(out) for out in outs]


def test_two_processes_match_one_process(tmp_path):
    if not gloo_available():
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but this jaxlib has no gloo CPU collectives")
        pytest.skip("this jaxlib has no gloo CPU collectives")
    results = run_two_processes(tmp_path)
    metas = [json.loads(str(result["meta"])) for result in results]

    x, group_ids, weights = make_data()
    reference = profile(make_capture(weights), array_batches(x, group_ids, 8), GROUPS)
    assert [meta["process_count"] for meta in metas] == [2, 2]
    assert [meta["shard"] for meta in metas] == [[0, 18], [18, 37]]
    for meta, result in zip(metas, results, strict=True):
        assert meta["layers"] == ["dense", "conv"]
        for name, ref in reference.items():
            assert meta["names"][name] == [name, list(GROUPS)]
            sums, counts = result[f"{name}.sums"], result[f"{name}.counts"]
            assert sums.dtype == np.float32 and counts.dtype == np.int32
            np.testing.assert_array_equal(counts, ref.counts)
            np.testing.assert_allclose(sums, ref.sums, rtol=0, atol=1e-5)
            # Every process holds the same result, bit for bit.
            np.testing.assert_array_equal(sums, results[0][f"{name}.sums"])
        assert meta["mismatch"] == (
            "combine_profiles: layer 'conv' has group names "
            "['zero', 'one', 'TWO', 'three'] on process 1 but "
            "['zero', 'one', 'two', 'three'] on process 0; "
            "expected the same on every process"
        )


def test_one_process_returns_input_unchanged():
    x, group_ids, weights = make_data()
    profiles = profile(make_capture(weights), array_batches(x, group_ids, 8), GROUPS)
    assert jax.process_count() == 1
    assert combine_profiles(profiles) is profiles
    with pytest.raises(TypeError, match="dict of LayerProfile"):
        combine_profiles({"dense": profiles["dense"].sums})
    assert isinstance(profiles["dense"], LayerProfile)


@pytest.mark.parametrize("n", [0, 1, 2, 5, 37])
@pytest.mark.parametrize("count", [1, 2, 3, 8])
def test_process_shard_partitions(n, count):
    shards = [
        process_shard(n, process_index=i, process_count=count) for i in range(count)
    ]
    covered = np.concatenate([np.arange(n)[shard] for shard in shards])
    np.testing.assert_array_equal(covered, np.arange(n))
    sizes = [shard.stop - shard.start for shard in shards]
    assert max(sizes) - min(sizes) <= 1


def test_process_shard_defaults_and_errors():
    assert process_shard(10) == slice(0, 10)  # one process: everything
    with pytest.raises(ValueError, match="n must be >= 0; got -1"):
        process_shard(-1)
    with pytest.raises(ValueError, match=r"process_index must be in \[0, 2\); got 2"):
        process_shard(4, process_index=2, process_count=2)
    with pytest.raises(ValueError, match="process_count must be >= 1; got 0"):
        process_shard(4, process_index=0, process_count=0)
    with pytest.raises(TypeError):
        process_shard(4.5)


def test_mismatch_messages_name_the_difference():
    x, group_ids, weights = make_data()
    profiles = profile(make_capture(weights), array_batches(x, group_ids, 8), GROUPS)
    reference = _describe(profiles, sorted(profiles))
    assert _first_mismatch(reference, reference) is None

    fewer = _describe(profiles, ["dense"])
    assert _first_mismatch(reference, fewer) == (
        "layers are",
        ["conv", "dense"],
        ["dense"],
    )
    wider = dict(profiles)
    wider["dense"] = dataclasses.replace(
        profiles["dense"], sums=np.zeros((4, 7), np.float32)
    )
    assert _first_mismatch(reference, _describe(wider, sorted(wider))) == (
        "layer 'dense' has sums shape",
        [4, 6],
        [4, 7],
    )
