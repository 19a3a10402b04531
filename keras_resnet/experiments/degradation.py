"""The degradation experiment of He et al. (2015): plain against residual.

He et al. (2015, "Deep Residual Learning for Image Recognition", Figures 1
and 6) train plain CIFAR networks of 20 and 56 layers and their residual
twins with one recipe. The deeper plain network ends with the higher
training error, and the residual networks do not degrade. This module
trains Plain-d and ResNet-d for each depth d (CIFAR family, shortcut A)
with `keras_resnet.train` and writes to the output directory:

- `history.csv`: one row per model and epoch with the training and
  held-out error, both measured after the epoch in inference mode;
- `runs.json`: the recipe, the data set and, per model, the steps run and
  SHA-256 digests of the data order and of the initial weights, which
  match between the plain and residual model of a depth;
- `degradation.png`: plain networks left, residual right, training error
  dashed and held-out error solid, one colour per depth.

Run `python -m keras_resnet.experiments.degradation --help`.
"""

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_resnet import data as image_data
from keras_resnet import train
from keras_resnet.cifar import blocks_per_stage
from keras_resnet.models import plain, resnet

logger = logging.getLogger(__name__)

DEFAULT_DEPTHS = (20, 56)

CSV_COLUMNS = (
    "model",
    "depth",
    "residual",
    *train.HISTORY_KEYS,
)


def model_label(depth, residual):
    """Return the model's name as He et al. (2015) write it: "ResNet-56"."""
    return f"{'ResNet' if residual else 'Plain'}-{depth}"


def train_pair(dataset, depth, recipe, seed, verbose):
    """Train Plain-`depth` and ResNet-`depth` on the same data order.

    Returns:
        A list of two run summaries (dicts), plain first; each has the
        `TrainResult` under "result".
    """
    runs = []
    for residual in (False, True):
        builder = resnet if residual else plain
        label = model_label(depth, residual)
        keras.backend.clear_session()
        model = train.build_compiled_model(
            lambda builder=builder: builder(
                depth,
                input_shape=dataset.image_shape,
                classes=dataset.classes,
            ),
            recipe,
            recipe.total_steps(len(dataset.x_train)),
            seed,
        )
        initial_digest = train.weights_digest(model)
        logger.info("training %s (%s)", label, model.name)
        if verbose:
            print(f"\n{label}: {model.count_params():,} parameters")
        result = train.fit(model, dataset, recipe, seed, verbose=verbose)
        runs.append(
            {
                "model": label,
                "depth": depth,
                "residual": residual,
                "parameters": model.count_params(),
                "steps": result.steps,
                "data_order_sha256": result.data_order_sha256,
                "initial_weights_sha256": initial_digest,
                "seconds": round(result.seconds, 1),
                "final_train_error": result.history["train_error"][-1],
                "final_heldout_error": result.history["heldout_error"][-1],
                "result": result,
            }
        )
    return runs


def history_rows(runs):
    """Return the `history.csv` rows of every run."""
    rows = []
    for run in runs:
        for epoch_row in train.history_rows(run["result"].history):
            rows.append(
                {
                    "model": run["model"],
                    "depth": run["depth"],
                    "residual": run["residual"],
                    **epoch_row,
                }
            )
    return rows


def twin_mismatches(runs):
    """Return messages for depths whose plain and residual runs differ.

    The two models of a depth must see the same data order for the same
    number of steps, from the same initial weights.
    """
    messages = []
    for depth in sorted({run["depth"] for run in runs}):
        pair = [run for run in runs if run["depth"] == depth]
        for key in ("data_order_sha256", "steps", "initial_weights_sha256"):
            values = {run[key] for run in pair}
            if len(values) > 1:
                messages.append(
                    f"depth {depth}: plain and residual differ in {key}: "
                    f"{sorted(values)}"
                )
    return messages


def plot(runs, path):
    """Draw plain (left) and residual (right) error curves into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot, ticker

    depths = sorted({run["depth"] for run in runs})
    colours = pyplot.get_cmap("tab10")
    figure, axes = pyplot.subplots(
        1, 2, figsize=(11, 4.2), sharey=True, constrained_layout=True
    )
    highest = 0.0
    for ax, residual in zip(axes, (False, True), strict=True):
        for index, depth in enumerate(depths):
            for run in runs:
                if run["depth"] != depth or run["residual"] != residual:
                    continue
                history = run["result"].history
                label = run["model"]
                colour = colours(index % 10)
                train_error = 100 * np.asarray(history["train_error"])
                heldout_error = 100 * np.asarray(history["heldout_error"])
                ax.plot(
                    history["epoch"],
                    train_error,
                    linestyle="--",
                    color=colour,
                    label=f"{label} training",
                )
                ax.plot(
                    history["epoch"],
                    heldout_error,
                    linestyle="-",
                    linewidth=2,
                    color=colour,
                    label=f"{label} held-out",
                )
                # The first epochs sit near chance; scale to the rest.
                tail = len(train_error) // 4
                highest = max(
                    highest,
                    train_error[tail:].max(),
                    heldout_error[tail:].max(),
                )
        ax.set_title("plain networks" if not residual else "ResNets")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    axes[0].set_ylabel("error (%)")
    # Show the whole range once the curves span most of it.
    top = 1.15 * highest
    axes[0].set_ylim(0, 100.0 if top > 60 else max(5.0, top))
    figure.suptitle(
        "training error (dashed) and held-out error (solid)", fontsize="medium"
    )
    figure.savefig(path, dpi=120)
    pyplot.close(figure)


def summary_table(runs):
    """Return a text table of final errors, steps and time per model."""
    header = ("model", "train error", "held-out error", "steps", "seconds")
    lines = [header] + [
        (
            run["model"],
            f"{100 * run['final_train_error']:.2f}%",
            f"{100 * run['final_heldout_error']:.2f}%",
            str(run["steps"]),
            f"{run['seconds']:.0f}",
        )
        for run in runs
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    rendered = []
    for number, line in enumerate(lines):
        cells = [line[0].ljust(widths[0])]
        cells += [
            cell.rjust(width)
            for cell, width in zip(line[1:], widths[1:], strict=True)
        ]
        rendered.append("  ".join(cells))
        if number == 0:
            rendered.append("  ".join("-" * width for width in widths))
    return "\n".join(rendered)


def write_runs_json(path, runs, recipe, dataset, seed, command):
    """Write the recipe, the data set and each run's checks to JSON."""
    document = {
        "command": command,
        "seed": seed,
        "dataset": {
            "name": dataset.name,
            "train_size": len(dataset.x_train),
            "heldout_size": len(dataset.x_heldout),
            "image_shape": list(dataset.image_shape),
            "classes": dataset.classes,
        },
        "recipe": dict(recipe.__dict__, decay_at=list(recipe.decay_at)),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
        "runs": [
            {key: value for key, value in run.items() if key != "result"}
            for run in runs
        ],
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m keras_resnet.experiments.degradation",
        description=(
            "Train Plain-d and ResNet-d (CIFAR family, shortcut A) for each "
            "depth d with one recipe and seed, and plot training and "
            "held-out error per epoch."
        ),
    )
    parser.add_argument(
        "--depths",
        type=int,
        nargs="+",
        default=list(DEFAULT_DEPTHS),
        metavar="DEPTH",
        help="depths 6n + 2 to compare (default: 20 56)",
    )
    train.add_recipe_arguments(parser)
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help=(
            "seed of the split, the initial weights, the data order and "
            "the augmentation (default: 0)"
        ),
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("out/degradation"),
        metavar="DIR",
        help="output directory (default: out/degradation)",
    )
    image_data.add_data_arguments(parser)
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="one line per epoch instead of progress bars",
    )
    # For fast test runs: train on the first N training images only.
    parser.add_argument("--train-size", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    """Run the experiment from the command line; return the exit code."""
    logging.basicConfig(level=logging.WARNING)
    args = parse_args(argv)
    try:
        for depth in args.depths:
            blocks_per_stage(depth)
        dataset = image_data.load_from_args(args, args.seed)
        if args.train_size is not None:
            dataset = dataset.subset(args.train_size)
        recipe = train.recipe_for(
            train.data_source(args),
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            warmup_fraction=args.warmup_fraction,
            warmup_learning_rate=args.warmup_learning_rate,
        )
        recipe.validate()
        args.out.mkdir(parents=True, exist_ok=True)
    except (image_data.DataError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    print(dataset.describe())
    total_steps = recipe.total_steps(len(dataset.x_train))
    warmup_steps = round(recipe.warmup_fraction * total_steps)
    print(
        f"recipe: {total_steps} steps of batch {recipe.batch_size}, "
        f"{recipe.epochs} epochs, SGD momentum {recipe.momentum}, learning "
        f"rate {recipe.learning_rate} after {warmup_steps} warm-up steps at "
        f"{recipe.warmup_learning_rate}, weight decay "
        f"{recipe.weight_decay}, augmentation "
        f"{'on' if recipe.augment else 'off'}, seed {args.seed}"
    )
    start = time.perf_counter()
    runs = []
    for depth in sorted(set(args.depths)):
        runs.extend(
            train_pair(
                dataset, depth, recipe, args.seed, 2 if args.quiet else 1
            )
        )

    train.write_history_csv(
        args.out / "history.csv", history_rows(runs), CSV_COLUMNS
    )
    command = " ".join(
        ["python -m keras_resnet.experiments.degradation"]
        + (sys.argv[1:] if argv is None else [str(arg) for arg in argv])
    )
    write_runs_json(
        args.out / "runs.json", runs, recipe, dataset, args.seed, command
    )
    plot(runs, args.out / "degradation.png")

    print()
    print(summary_table(runs))
    print(
        f"\n{len(runs)} models in {time.perf_counter() - start:.0f} s; "
        f"wrote {args.out}/history.csv, runs.json and degradation.png"
    )
    mismatches = twin_mismatches(runs)
    if mismatches:
        for message in mismatches:
            print(f"error: {message}", file=sys.stderr)
        return 1
    print(
        "check: the plain and residual model of each depth had the same "
        "data order, steps and initial weights"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
