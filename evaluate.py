"""Evaluates a checkpoint: NME, failure rate and AUC, a JSON report and a CED plot.

    python evaluate.py --workdir runs/demo
    python evaluate.py --workdir runs/wflw --checkpoint best --split test --flip_test
    python evaluate.py --workdir runs/w300 --split challenge --norm eye_centers --box gt

The model and dataset come from the config stored in the checkpoint; flags override the split,
decoder, normaliser and box protocol. For WFLW's test split the six subsets are reported too.
"""

from awing_jax.cli.evaluate import run

if __name__ == "__main__":
    run()
