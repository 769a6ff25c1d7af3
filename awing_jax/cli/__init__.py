"""The command-line programs: ``train``, ``evaluate`` and ``predict``.

Each module defines its absl flags and a ``run()`` entry point; the repository's top-level
``train.py``, ``evaluate.py`` and ``predict.py`` call them.
"""
