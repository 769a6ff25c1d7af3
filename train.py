"""Trains a face-alignment model; with no flags, the demo on the embedded synthetic_faces set.

    python train.py                                    # the demo: configs/demo.py
    python train.py --config configs/wflw.py --workdir runs/wflw --config.loss.kind=l2
    # several processes (pods, or hosts of GPUs): the same command on every host with
    python train.py --config configs/wflw.py --workdir gs://... --distributed
    # or explicitly, e.g. two processes on one machine:
    python train.py ... --coordinator_address=127.0.0.1:1234 --num_processes=2 --process_id=0

A rerun with the same workdir resumes from its latest checkpoint (params, optimiser, step, data
iterator), so an interrupted run continues exactly as an uninterrupted one.
"""

from awing_jax.cli.train import run

if __name__ == "__main__":
    run()
