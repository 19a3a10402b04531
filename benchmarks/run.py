"""Inference, export and training speed by format, in one process and run.

    python benchmarks/run.py                 # the full run, about 10 minutes
    python benchmarks/run.py --tiny          # ResNet-20 only, few repeats

For each model it exports every format with `export.export_model`, then
times batch-1 latency and batch-8 throughput of the Keras model (a
`tf.function`), the reloaded SavedModel, the TFLite files in LiteRT
(XNNPACK) and the ONNX files in onnxruntime, all on every core. The
references run in the same process: the ONNX file that Keras' own
`model.export(format="onnx")` writes, in the same onnxruntime session
options, and a float32 numpy matrix multiply as this CPU's practical peak.
It also times each converter alone and the whole `export_model` call, and
one training step at batch 128 of ResNet-20 with the package's recipe,
with XLA, and in PyTorch when torch is installed.

Every figure is the median of repeated runs after warm-up. The targets are
ratios between rows of the same run, so that a busy machine moves both
sides of each ratio. Results go to `benchmarks/results.json`,
`benchmarks/throughput.png` and a printed table.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent

# (label, builder name, input shape)
MODELS = {
    "resnet50": ("ResNet50", (224, 224, 3)),
    "resnet20": ("ResNet20", (32, 32, 3)),
}
BATCHES = (1, 8)
TRAIN_BATCH = 128

# Targets, as ratios within one run.
TARGET_ONNX_VS_KERAS_ONNX = 1.0  # latency ratio, at most
TARGET_ONNX_PEAK_FRACTION = 0.9  # of the matmul peak at batch 8, at least
TARGET_INT8_SPEEDUP = 3.0  # float32 latency / int8 latency, at least
TARGET_EXPORT_OVERHEAD = 1.3  # export_model / sum of converters, at most
TARGET_TRAIN_VS_TORCH = 1.0  # images/s ratio, at least

# Seconds of rest before each timed block of a pair, so that the other
# runtime's worker threads have stopped spinning.
BLOCK_PAUSE = 0.1

# Rows whose latency ratio a / b is a target, timed again in alternation.
# The control pair runs one ONNX file in two sessions: its distance from
# 1.0 shows how far the other ratios can move with no real difference.
CONTROL = "onnx_control"
PAIRS = (
    ("onnx", CONTROL),
    ("onnx", "keras_onnx"),
    ("tflite", "tflite_int8"),
    ("onnx", "onnx_int8"),
)

FLOAT_FORMATS = ("savedmodel", "tflite", "onnx")
INT8_FORMATS = ("tflite_int8", "onnx_int8")


def cores():
    """Pin the process to every core it may use and return their count."""
    available = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, available)
    return len(available)


def call_seconds(call, repeats):
    """Return the wall time of each of `repeats` runs of `call()`."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def median_seconds(call, repeats, warmup):
    """Return the median wall time of `call()` over `repeats` runs."""
    for _ in range(warmup):
        call()
    return statistics.median(call_seconds(call, repeats))


def paired_ratio(call_a, call_b, rounds, warmup, block=5):
    """Return time(call_a) / time(call_b), timed alternately, and its spread.

    Each round times a block of `block` calls of one and then of the
    other. The order swaps every round. A load that comes and goes on the
    machine then lands on both sides, not on whichever row ran during it.
    A pause precedes each block because onnxruntime's and XNNPACK's
    worker threads spin for a while after a call and would slow the other
    runtime's first calls.

    Returns:
        A dict: `ratio`, the median of all a calls over the median of all
        b calls, and `low` and `high`, the quartiles of the rounds' own
        ratios (block median over block median).
    """
    for _ in range(warmup):
        call_a()
        call_b()
    times = {call_a: [], call_b: []}
    round_ratios = []
    for index in range(rounds):
        order = (call_a, call_b) if index % 2 == 0 else (call_b, call_a)
        block_medians = {}
        for call in order:
            time.sleep(BLOCK_PAUSE)
            block_times = call_seconds(call, block)
            times[call].extend(block_times)
            block_medians[call] = statistics.median(block_times)
        round_ratios.append(block_medians[call_a] / block_medians[call_b])
    low, _, high = statistics.quantiles(round_ratios, n=4)
    return {
        "ratio": statistics.median(times[call_a])
        / statistics.median(times[call_b]),
        "low": low,
        "high": high,
    }


def matmul_peak(threads, repeats, size=2048):
    """Return numpy's float32 matmul speed in GFLOP/s: this CPU's peak."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    seconds = median_seconds(lambda: a @ b, repeats, warmup=3)
    return 2 * size**3 / seconds / 1e9


def onnx_session(path, threads):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = (
        onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    )
    return onnxruntime.InferenceSession(
        str(path), options, providers=["CPUExecutionProvider"]
    )


def runners(model, out_dir, keras_onnx, threads, batch):
    """Return {row name: callable} running one batch of `batch` images."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    shape = (batch, *model.input_shape[1:])
    x = np.random.default_rng(batch).standard_normal(shape).astype("float32")
    calls = {}

    keras_fn = tf.function(lambda t: model(t, training=False))
    x_tf = tf.constant(x)
    calls["keras"] = lambda: keras_fn(x_tf).numpy()

    loaded = tf.saved_model.load(str(out_dir / "saved_model"))
    signature = loaded.signatures["serving_default"]
    calls["savedmodel"] = lambda: signature(image=x_tf)

    for name, file in (
        ("tflite", "model.tflite"),
        ("tflite_int8", "model_int8.tflite"),
    ):
        interpreter = Interpreter(
            model_path=str(out_dir / file), num_threads=threads
        )
        runner = interpreter.get_signature_runner("serving_default")
        calls[name] = lambda runner=runner: runner(image=x)

    for name, path in (
        ("onnx", out_dir / "model.onnx"),
        (CONTROL, out_dir / "model.onnx"),
        ("onnx_int8", out_dir / "model_int8.onnx"),
        ("keras_onnx", keras_onnx),
    ):
        session = onnx_session(path, threads)
        input_name = session.get_inputs()[0].name
        calls[name] = lambda s=session, n=input_name: s.run(None, {n: x})
    return calls


def time_exports(model, work, calibration):
    """Time each bare converter and the whole `export_model` call."""
    from export import export_model
    from export.onnx import plain_grouped_convolutions, write_onnx
    from export.savedmodel import write_savedmodel
    from export.signature import model_signature, serving_function
    from export.tflite import write_tflite

    inputs, outputs = model_signature(model)
    bare = work / "bare"
    bare.mkdir()
    seconds = {}

    function = serving_function(model, inputs, outputs)
    start = time.perf_counter()
    write_savedmodel(model, bare / "saved_model", function, inputs)
    seconds["savedmodel"] = time.perf_counter() - start

    start = time.perf_counter()
    write_tflite(bare / "saved_model", bare / "model.tflite")
    seconds["tflite"] = time.perf_counter() - start

    function = serving_function(model, inputs, outputs)
    start = time.perf_counter()
    with plain_grouped_convolutions(model):
        write_onnx(function, inputs, outputs, bare / "model.onnx")
    seconds["onnx"] = time.perf_counter() - start

    start = time.perf_counter()
    export_model(model, work / "float", FLOAT_FORMATS)
    seconds["export_model"] = time.perf_counter() - start

    start = time.perf_counter()
    export_model(model, work / "int8", INT8_FORMATS, calibration=calibration)
    seconds["export_model_int8"] = time.perf_counter() - start
    return seconds


def keras_onnx_export(model, path):
    """Write the reference ONNX file with Keras' own exporter."""
    model.export(str(path), format="onnx", verbose=False)
    return path


def op_counts(path):
    """Return {ONNX op type: number of nodes} of the graph at `path`."""
    import collections

    import onnx

    graph = onnx.load(str(path)).graph
    return dict(
        sorted(collections.Counter(n.op_type for n in graph.node).items())
    )


def bench_model(label, args, threads, peak):
    import keras

    import keras_resnet

    builder_name, shape = MODELS[label]
    if args.tiny:
        shape = (16, 16, 3)
    keras.utils.set_random_seed(0)
    # Logits, so that a random network's saturated softmax cannot make the
    # int8 files look exact.
    model = keras_resnet.get_model(builder_name)(
        input_shape=shape, classifier_activation=None
    )
    macs = keras_resnet.count_flops(model).macs
    rng = np.random.default_rng(0)
    calibration = rng.standard_normal((16, *shape)).astype("float32")

    with tempfile.TemporaryDirectory(prefix="bench.") as scratch:
        work = Path(scratch)
        print(f"{label}: exporting", file=sys.stderr)
        export_seconds = time_exports(model, work, calibration)
        # Keep the three float files and the two int8 ones in one place.
        for name in ("model_int8.tflite", "model_int8.onnx"):
            os.replace(work / "int8" / name, work / "float" / name)
        keras_onnx = keras_onnx_export(model, work / "keras.onnx")
        onnx_ops = {
            "export": op_counts(work / "float" / "model.onnx"),
            "keras_onnx": op_counts(keras_onnx),
        }

        rows = []
        pairs = []
        for batch in BATCHES:
            calls = runners(model, work / "float", keras_onnx, threads, batch)
            for a, b in PAIRS:
                print(
                    f"{label}: timing {a} / {b} at batch {batch}",
                    file=sys.stderr,
                )
                # A round makes 10 calls, so half as many rounds as
                # repeats keep a pair's time close to its two rows' time.
                timing = paired_ratio(
                    calls[a], calls[b], max(3, args.repeats // 2), args.warmup
                )
                pairs.append({"a": a, "b": b, "batch": batch, **timing})
            for name, call in calls.items():
                if name == CONTROL:
                    continue
                print(
                    f"{label}: timing {name} at batch {batch}", file=sys.stderr
                )
                seconds = median_seconds(call, args.repeats, args.warmup)
                gflops = 2 * macs * batch / seconds / 1e9
                rows.append(
                    {
                        "model": label,
                        "input": list(shape),
                        "runtime": name,
                        "batch": batch,
                        "ms": seconds * 1e3,
                        "images_per_second": batch / seconds,
                        "gflops": gflops,
                        "peak_fraction": gflops / peak,
                    }
                )
    return {
        "macs": macs,
        "rows": rows,
        "pairs": pairs,
        "export_seconds": export_seconds,
        "onnx_ops": onnx_ops,
    }


def bench_training(args, threads):
    """Return images/s of one training step at batch 128 for ResNet-20."""
    import keras

    import keras_resnet
    from keras_resnet.train import Recipe, build_compiled_model

    rng = np.random.default_rng(0)
    x = rng.standard_normal((TRAIN_BATCH, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, TRAIN_BATCH)
    recipe = Recipe(epochs=1, batch_size=TRAIN_BATCH)
    results = {}

    for name, jit in (("keras_shipped", None), ("keras_jit", True)):
        model = build_compiled_model(
            lambda: keras_resnet.ResNet20(), recipe, total_steps=1000, seed=0
        )
        if jit:
            model.compile(
                optimizer=model.optimizer,
                loss=model.loss,
                metrics=["accuracy"],
                jit_compile=True,
            )
        seconds = median_seconds(
            lambda m=model: m.train_on_batch(x, y),
            args.train_repeats,
            warmup=1 if args.tiny else 3,
        )
        results[name] = {"images_per_second": TRAIN_BATCH / seconds}
        del model
        keras.backend.clear_session()

    try:
        from torch_reference import torch_train_step
    except ImportError as err:
        results["torch"] = {"skipped": f"torch is not installed ({err})"}
    else:
        seconds = median_seconds(
            torch_train_step(x, y, threads),
            args.train_repeats,
            warmup=1 if args.tiny else 3,
        )
        results["torch"] = {"images_per_second": TRAIN_BATCH / seconds}
    return results


def row(rows, runtime, batch):
    return next(
        r for r in rows if r["runtime"] == runtime and r["batch"] == batch
    )


def pair(pairs, a, b, batch):
    """Return the alternated timing of a / b at `batch` (see paired_ratio)."""
    return next(
        p for p in pairs if p["a"] == a and p["b"] == b and p["batch"] == batch
    )


def check_targets(results):
    """Return one entry per target: the measured ratio and whether it holds."""
    checks = []
    for label, result in results["models"].items():
        rows = result["rows"]
        for batch in BATCHES:
            timing = pair(result["pairs"], "onnx", "keras_onnx", batch)
            checks.append(
                {
                    "target": f"{label} ONNX / Keras ONNX latency, b{batch}",
                    "value": timing["ratio"],
                    "spread": [timing["low"], timing["high"]],
                    "limit": f"<= {TARGET_ONNX_VS_KERAS_ONNX}",
                    "met": timing["ratio"] <= TARGET_ONNX_VS_KERAS_ONNX,
                }
            )
        fraction = row(rows, "onnx", 8)["peak_fraction"]
        checks.append(
            {
                "target": f"{label} ONNX share of matmul peak, b8",
                "value": fraction,
                "limit": f">= {TARGET_ONNX_PEAK_FRACTION}",
                "met": fraction >= TARGET_ONNX_PEAK_FRACTION,
            }
        )
        for float_name, int8_name in (
            ("tflite", "tflite_int8"),
            ("onnx", "onnx_int8"),
        ):
            for batch in BATCHES:
                timing = pair(result["pairs"], float_name, int8_name, batch)
                checks.append(
                    {
                        "target": f"{label} {int8_name} speed-up, b{batch}",
                        "value": timing["ratio"],
                        "spread": [timing["low"], timing["high"]],
                        "limit": f">= {TARGET_INT8_SPEEDUP}",
                        "met": timing["ratio"] >= TARGET_INT8_SPEEDUP,
                    }
                )
        seconds = result["export_seconds"]
        overhead = seconds["export_model"] / sum(
            seconds[name] for name in FLOAT_FORMATS
        )
        checks.append(
            {
                "target": f"{label} export_model / sum of converters",
                "value": overhead,
                "limit": f"<= {TARGET_EXPORT_OVERHEAD}",
                "met": overhead <= TARGET_EXPORT_OVERHEAD,
            }
        )
    training = results.get("training")
    if training and "images_per_second" in training.get("torch", {}):
        ratio = (
            training["keras_shipped"]["images_per_second"]
            / training["torch"]["images_per_second"]
        )
        checks.append(
            {
                "target": "ResNet-20 training images/s, shipped / PyTorch",
                "value": ratio,
                "limit": f">= {TARGET_TRAIN_VS_TORCH}",
                "met": ratio >= TARGET_TRAIN_VS_TORCH,
            }
        )
    return checks


def print_tables(results):
    from export.table import render_table

    peak = results["matmul_peak_gflops"]
    print(f"matmul peak: {peak:.1f} GFLOP/s on {results['cores']} cores")
    table = [
        (
            r["model"],
            r["runtime"],
            r["batch"],
            f"{r['ms']:.2f}",
            f"{r['images_per_second']:.1f}",
            f"{r['peak_fraction']:.0%}",
        )
        for result in results["models"].values()
        for r in result["rows"]
    ]
    print(
        render_table(
            ("model", "runtime", "batch", "ms", "images/s", "of peak"), table
        )
    )
    print()
    exports = [
        (label, name, f"{seconds:.1f}")
        for label, result in results["models"].items()
        for name, seconds in result["export_seconds"].items()
    ]
    print(render_table(("model", "export step", "seconds"), exports))
    for label, result in results["models"].items():
        ops = result["onnx_ops"]
        same = "the same" if ops["export"] == ops["keras_onnx"] else "different"
        print(f"{label}: ONNX op counts of export and Keras' file are {same}")
        control = ", ".join(
            "b{} {ratio:.2f} ({low:.2f}-{high:.2f})".format(
                batch, **pair(result["pairs"], "onnx", CONTROL, batch)
            )
            for batch in BATCHES
        )
        print(f"{label}: one ONNX file against itself (control): {control}")
    if results.get("training"):
        print()
        training = [
            (name, value.get("skipped") or f"{value['images_per_second']:.0f}")
            for name, value in results["training"].items()
        ]
        print(render_table(("training, batch 128", "images/s"), training))
    print()
    targets = [
        (
            c["target"],
            f"{c['value']:.2f}",
            "{:.2f}-{:.2f}".format(*c["spread"]) if "spread" in c else "",
            c["limit"],
            "met" if c["met"] else "MISSED",
        )
        for c in results["targets"]
    ]
    columns = ("target", "measured", "rounds' quartiles", "limit", "result")
    print(render_table(columns, targets))


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(results["models"])
    figure, axes = plt.subplots(
        1, len(labels), figsize=(6 * len(labels), 4), squeeze=False
    )
    for axis, label in zip(axes[0], labels, strict=True):
        rows = [r for r in results["models"][label]["rows"] if r["batch"] == 8]
        axis.barh(
            [r["runtime"] for r in rows],
            [r["images_per_second"] for r in rows],
        )
        axis.set_xlabel("images per second, batch 8")
        axis.set_title(f"{label}, {results['cores']} CPU cores")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="ResNet-20 only with few repeats, for the test suite",
    )
    parser.add_argument("--repeats", type=int, default=30, help="timed runs")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs")
    parser.add_argument(
        "--train-repeats", type=int, default=10, help="timed training steps"
    )
    parser.add_argument(
        "--skip-training", action="store_true", help="leave out training"
    )
    parser.add_argument(
        "--out", type=Path, default=HERE, help="directory for the results"
    )
    args = parser.parse_args(argv)
    if args.tiny:
        args.repeats, args.warmup, args.train_repeats = 3, 1, 1
    return args


def main(argv=None):
    args = parse_args(argv)
    sys.path.insert(0, str(HERE))
    threads = cores()
    peak = matmul_peak(threads, repeats=max(5, args.repeats // 3))

    import keras
    import onnxruntime
    import tensorflow as tf

    labels = ["resnet20"] if args.tiny else list(MODELS)
    results = {
        "command": "python benchmarks/run.py"
        + (" --tiny" if args.tiny else ""),
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },
        "versions": {
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
        "cores": threads,
        "repeats": args.repeats,
        "matmul_peak_gflops": peak,
        "models": {
            label: bench_model(label, args, threads, peak) for label in labels
        },
    }
    if not args.skip_training:
        results["training"] = bench_training(args, threads)
    results["targets"] = check_targets(results)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.out / "throughput.png")
    print_tables(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
