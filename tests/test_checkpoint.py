"""Checkpoint retention: config.keep_checkpoints latest checkpoints, plus the best by NME."""

import numpy as np
import pytest

from awing_jax import checkpoint
from configs import tiny


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_keeps_the_latest_n_and_the_best(tmp_path, keep):
    config = tiny.get_config()
    nmes = {1: 0.5, 2: 0.1, 3: 0.4, 4: 0.3, 5: 0.35, 6: 0.45}  # step 2 is the best
    workdir = str(tmp_path / f"keep{keep}")
    manager = checkpoint.create_manager(workdir, keep_checkpoints=keep)
    for step, nme in nmes.items():
        state = {"params": {"w": np.full(3, step, np.float32)}, "batch_stats": {}}
        checkpoint.save(manager, step, state, None, config, metrics={"nme": nme})
        manager.wait_until_finished()
    latest = sorted(nmes)[-keep:]
    assert sorted(manager.all_steps()) == sorted({2, *latest})
    reader = checkpoint.create_manager(workdir, read_only=True)
    assert reader.best_step() == 2
    assert checkpoint.resolve_step(reader, "latest") == 6
    restored = checkpoint.restore_variables(reader, 2)
    np.testing.assert_array_equal(restored["params"]["w"], [2, 2, 2])
    assert checkpoint.restore_config(reader, 6).keep_checkpoints == config.keep_checkpoints


def test_keep_checkpoints_must_keep_one(tmp_path):
    with pytest.raises(ValueError, match="keep_checkpoints must be at least 1, got 0"):
        checkpoint.create_manager(str(tmp_path), keep_checkpoints=0)
