"""Test setup, before jax is imported: eight fake CPU devices so pmap tests run anywhere, and a
persistent XLA compilation cache shared by the tests and the training processes they start
(compiling, not running, dominates the tests' time on a CPU)."""

import os
import tempfile

# XLA's CPU backend at LLVM optimisation level 0, without LLVM's expensive passes: what JAX's own
# JAX_DISABLE_MOST_OPTIMIZATIONS sets, for runs where compiling costs more than running slower
# code (XLA's defaults: level 3, with those passes). The tests compile far more than they run: a
# cold suite compiles about 40 % less than at XLA's defaults (BENCHMARKS.md, "Test suite"). The
# programs compute the same operations; their float32 results can differ from the default
# level's in the last bits (bench/compile_options.py: up to 3.1e-5 in a FAN's heatmaps; 0.012 in
# the parameters after two RMSProp steps, which turn a rounding-level gradient into a full step),
# and the suite passes at both. The processes that tests start inherit these flags
# (tests/_env.py keeps them), so what a test compares bit for bit (a resumed run against
# an uninterrupted one) is compiled alike on both sides. The installed-package test runs at XLA's
# defaults, as a user would, and the initialiser test compiles at them explicitly.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count=8 {TEST_XLA_FLAGS}")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "awing-jax-test-xla-cache"))
# Every program, however small: the operations that tests run outside jit compile one by one, and
# the workers and the processes the tests start compile many of the same ones (a cold suite
# compiles about 40 s less with 0 than with 0.5; BENCHMARKS.md, "Test suite").
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

# The longest tests (whole training runs in subprocesses, many compilations) go first, longest
# first, so that the two xdist workers do not end with one of them alone on a long test.
SLOW_FIRST = (
    "tests/test_regression.py::test_compare_losses_end_to_end",
    "tests/test_runtime.py::test_fan_lowerings_are_one_function_of_the_same_parameters",
    "tests/test_bench.py::test_compare_runs_each_framework_in_its_own_process",
    "tests/test_coco_landmarks.py::test_five_points_train_evaluate_predict_export",
    "tests/test_train.py::test_initialiser_options_change_its_compile_time_only",
    "tests/test_train.py::test_two_processes_equal_one_process",
    "tests/test_train.py::test_training_lowers_loss_and_evaluate_writes_report",
    "tests/test_inference.py::test_every_path_gives_the_landmarks_of_the_one_function",
    "tests/test_predict.py::test_export_round_trip_for_two_batch_sizes",
    "tests/test_train.py::test_nan_stops_training_and_keeps_last_checkpoint",
    "tests/test_finetune.py::test_finetune_run_starts_from_the_converted_params",
    "tests/test_coco_landmarks.py::test_68_points_train_with_boundary_and_evaluate",
)


def pytest_collection_modifyitems(config, items):
    def rank(item):
        for i, prefix in enumerate(SLOW_FIRST):
            if item.nodeid.startswith(prefix):
                return i
        return len(SLOW_FIRST)

    items.sort(key=rank)  # stable: the rest keep their order
