"""The ``kerasrnn`` command: train, evaluate, generate, export, serve,
bench.

    kerasrnn train classifier|tagger|seq2seq|lm --data FILE|builtin --out DIR
        [--tokenizer word|char] [--units 128 --embedding-dim 64 --layers 1
        --cell lstm ...] [--config run.json] [--epochs 10] [--patience 3]
        [--resume]
    kerasrnn evaluate DIR --data FILE|builtin
    kerasrnn generate DIR TEXT... [--method greedy|sample|beam ...]
    kerasrnn export DIR [--to onnx|saved_model] [--dest PATH] [--quantize]
    kerasrnn serve DIR|EXPORT_DIR [kerasrnn-serving serve flags...]
    kerasrnn bench DIR [--batch-size 32] [--repeats 20]

Data (``kerasrnn.training.data``): classifier ``text<TAB>label`` and
seq2seq ``source<TAB>target`` lines (``--columns`` picks two columns, so
the Tatoeba ``fra.txt`` reads as it is), tagger CoNLL-U (FORM and UPOS or
``--tag-column xpos``), lm one text per line; ``builtin`` is a small
made-up data set of the task.

A run directory holds ``run.json`` (task, settings, vocabularies, state),
``model.keras`` (written once training ends, by rename, so it is complete
or absent), ``history.json``, ``curve.png`` and the resume state
(``backup/`` for ``fit``, ``checkpoints/`` for the language model):
``--resume`` continues a killed run where its last checkpoint left it.
``--config FILE`` is a JSON object of settings (the flags' names with
underscores); flags given on the command line win over it.

Every mistake (a missing file, a bad line, an unknown value, empty data,
an output directory holding something else) is one line on stderr naming
it, exit status 2, before anything is written.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from kerasrnn.training import data as data_files  # noqa: E402
from kerasrnn.training import tasks  # noqa: E402
from kerasrnn.training.files import atomic_write_text  # noqa: E402

RUN = "run.json"
MODEL = "model.keras"
# Settings a resumed run may change.
RESUMABLE = ("epochs", "patience")


class UsageError(Exception):
    """A mistake on the command line or in its files (exit status 2)."""


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one ``UsageError`` line, not usage text."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


def _cell_names():
    from kerasrnn.cells import cell_names

    return cell_names()


def _setting_flags(command):
    """The ``DEFAULTS`` settings as flags (absent unless given)."""
    for name, default in tasks.DEFAULTS.items():
        flag = "--" + name.replace("_", "-")
        shown = {"bidirectional": "on for the tagger, else off",
                 "max_examples": "all"}.get(name, default)
        if name == "bidirectional":
            command.add_argument(flag, action=argparse.BooleanOptionalAction,
                                 default=argparse.SUPPRESS,
                                 help=f"default: {shown}")
            continue
        kind = type(default) if default is not None else int
        choices = tasks.CHOICES.get(name)
        if name == "cell":
            choices = _cell_names()
        command.add_argument(flag, type=kind, choices=choices,
                             default=argparse.SUPPRESS,
                             help=f"default: {shown}")


def _parser():
    parser = Parser(prog="kerasrnn", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model")
    train.add_argument("task", choices=tasks.TASKS)
    _data_flags(train)
    train.add_argument("--out", required=True, help="the run directory")
    train.add_argument("--config", help="a JSON file of settings")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --out")
    train.add_argument("--verbose", type=int, choices=(0, 1, 2), default=None,
                       help="progress: 0 none, 1 bar, 2 a line per epoch")
    _setting_flags(train)
    train.set_defaults(handler=train_command)

    evaluate = commands.add_parser("evaluate", help="score a trained run")
    evaluate.add_argument("directory", help="the run directory")
    _data_flags(evaluate)
    evaluate.set_defaults(handler=evaluate_command)

    generate = commands.add_parser(
        "generate", help="translate, continue, classify or tag texts")
    generate.add_argument("directory", help="the run directory")
    generate.add_argument("texts", nargs="+")
    generate.add_argument("--method", choices=("greedy", "sample", "beam"))
    generate.add_argument("--max-length", type=int)
    generate.add_argument("--beam-width", type=int)
    generate.add_argument("--temperature", type=float)
    generate.add_argument("--seed", type=int)
    generate.set_defaults(handler=generate_command)

    export = commands.add_parser("export", help="ONNX or SavedModel")
    export.add_argument("directory", help="the run directory")
    export.add_argument("--to", choices=("onnx", "saved_model"),
                        default="onnx")
    export.add_argument("--dest", help="default: DIR/onnx or "
                        "DIR/saved_model/1")
    export.add_argument("--quantize", action="store_true")
    export.add_argument("--no-verify", action="store_true")
    export.set_defaults(handler=export_command)

    serve = commands.add_parser(
        "serve", help="serve an export over HTTP (kerasrnn-serving serve)")
    serve.add_argument("directory",
                       help="an export directory, or a run directory "
                       "holding onnx/")
    serve.add_argument("arguments", nargs=argparse.REMAINDER,
                       help="flags of kerasrnn-serving serve")
    serve.set_defaults(handler=serve_command)

    bench = commands.add_parser("bench", help="time a trained model")
    bench.add_argument("directory", help="the run directory")
    bench.add_argument("--batch-size", type=int, default=32)
    bench.add_argument("--repeats", type=int, default=20)
    bench.set_defaults(handler=bench_command)
    return parser


def _data_flags(command):
    command.add_argument("--data", required=True,
                         help="the data file, or 'builtin'")
    command.add_argument("--columns", default="1,2",
                         help="the two tab-separated columns (1-based) of "
                         "classifier and seq2seq data")
    command.add_argument("--tag-column", choices=("upos", "xpos"),
                         default="upos")


# --- settings and run directories --------------------------------------


def _config(args):
    """``DEFAULTS`` <- the ``--config`` file <- the flags given."""
    config = dict(tasks.DEFAULTS)
    if args.config:
        try:
            with open(args.config, encoding="utf-8") as handle:
                loaded = json.load(handle)
        except FileNotFoundError:
            raise UsageError(f"--config: no such file: {args.config}")
        except json.JSONDecodeError as error:
            raise UsageError(f"--config: {args.config} is not JSON: {error}")
        if not isinstance(loaded, dict):
            raise UsageError(f"--config: {args.config} must hold a JSON "
                             "object of settings")
        unknown = sorted(set(loaded) - set(config))
        if unknown:
            raise UsageError(
                f"--config: unknown setting {unknown[0]!r} in {args.config}"
                f"; known: {', '.join(sorted(config))}")
        config.update(loaded)
    config.update(_given(args))
    _check(config)
    return config


def _given(args):
    return {name: getattr(args, name) for name in tasks.DEFAULTS
            if hasattr(args, name)}


def _check(config):
    for name, choices in {**tasks.CHOICES, "cell": _cell_names()}.items():
        if config[name] not in choices:
            raise UsageError(f"{name} must be one of {', '.join(choices)}; "
                             f"got {config[name]!r}")
    for name in ("vocab_size", "max_length", "units", "embedding_dim",
                 "layers", "epochs", "batch_size", "num_steps"):
        value = config[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"{name} must be a positive integer; got "
                             f"{value!r}")
    if config["patience"] < 0 or config["learning_rate"] <= 0:
        raise UsageError("patience must be >= 0 and learning_rate > 0")
    if not 0 <= config["dropout"] < 1:
        raise UsageError(f"dropout must lie in [0, 1); got "
                         f"{config['dropout']!r}")
    if not 0 <= config["validation_split"] < 1:
        raise UsageError("validation_split must lie in [0, 1); got "
                         f"{config['validation_split']!r}")
    if config["max_examples"] is not None and config["max_examples"] < 1:
        raise UsageError("max_examples must be a positive integer")


def read_run(directory):
    """The ``run.json`` of a run directory (UsageError if none)."""
    path = os.path.join(directory, RUN)
    if not os.path.isfile(path):
        raise UsageError(f"{directory} holds no kerasrnn run ({RUN})")
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _trained(directory):
    """``(run, task, model)`` of a finished run."""
    import keras

    import kerasrnn  # noqa: F401  (registers the layers for loading)

    run = read_run(directory)
    if run["status"] != "done":
        raise UsageError(f"{directory} holds a run still training "
                         "(finish it with kerasrnn train ... --resume)")
    model = keras.saving.load_model(os.path.join(directory, MODEL))
    return run, tasks.task(run["task"], run["config"], run["assets"]), model


def _stored_run(args, config):
    """The run in ``--out`` to resume (None for a new run), checked
    against the command line."""
    out = args.out
    if not args.resume:
        if os.path.isdir(out) and os.listdir(out):
            if os.path.exists(os.path.join(out, RUN)):
                raise UsageError(
                    f"--out {out} holds a {read_run(out)['task']} run; pass "
                    "--resume to continue it or choose another directory")
            raise UsageError(f"--out {out} is not empty and holds no "
                             "kerasrnn run; choose a new directory")
        if os.path.exists(out) and not os.path.isdir(out):
            raise UsageError(f"--out {out} is a file")
        return None
    run = read_run(out) if os.path.isdir(out) else None
    if run is None:
        raise UsageError(f"--resume: {out} holds no kerasrnn run")
    if run["task"] != args.task:
        raise UsageError(f"--resume: {out} holds a {run['task']} run, not "
                         f"{args.task}")
    for name, value in _given(args).items():
        if name not in RESUMABLE and run["config"][name] != value:
            raise UsageError(
                f"--{name.replace('_', '-')} {value} differs from the run's "
                f"{run['config'][name]}; a resumed run keeps its settings "
                f"(only {', '.join(RESUMABLE)} may change)")
    if run["status"] == "done" and config["epochs"] <= run["epochs_trained"]:
        raise UsageError(f"--resume: {out} has trained its "
                         f"{run['epochs_trained']} epochs; raise --epochs "
                         "to train on")
    return run


def _rows(task, args, limit=None):
    try:
        columns = tuple(int(c) for c in args.columns.split(","))
    except ValueError:
        columns = ()
    if len(columns) != 2 or min(columns) < 1 or len(set(columns)) < 2:
        raise UsageError(f"--columns must be two different 1-based column "
                         f"numbers like 1,2; got {args.columns!r}")
    if args.data == "builtin":
        return data_files.builtin(task)[:limit]
    if task in ("classifier", "seq2seq"):
        return data_files.read_columns(args.data, columns, limit)
    if task == "tagger":
        return data_files.read_conllu(args.data, args.tag_column, limit)
    return data_files.read_lines(args.data, limit)


def _split(name, rows, fraction, seed):
    """``(train, validation)``: the last ``fraction`` of the lines (lm), a
    seeded ``fraction`` of the distinct sources with all their targets
    (seq2seq: no source is in both, as ``translation.split_by_source``),
    or of a seeded shuffle of the rows."""
    rng = np.random.default_rng(seed)
    if name == "seq2seq" and fraction:
        from kerasrnn.models import translation

        train, held = translation.split_by_source(rows, fraction, rng)
        validation = [(s, t) for s, targets in held for t in targets]
    else:
        if name != "lm":
            rows = [rows[i] for i in rng.permutation(len(rows))]
        count = int(len(rows) * fraction)
        if fraction and not count and len(rows) > 1:
            count = 1
        train, validation = rows[:len(rows) - count], rows[len(rows) - count:]
    if not train:
        raise data_files.DataError("--data: no rows left to train on after "
                                   "the validation split")
    return train, validation


# --- commands ------------------------------------------------------------


def train_command(args):
    config = _config(args)
    stored = _stored_run(args, config)
    if stored is not None:
        config = {**stored["config"],
                  **{n: config[n] for n in RESUMABLE}}
    rows = _rows(args.task, args, config["max_examples"])
    train, validation = _split(args.task, rows, config["validation_split"],
                               config["seed"])
    task = tasks.task(args.task, config,
                      stored["assets"] if stored else None)
    if stored is None:
        task.learn(train)
    if args.task == "seq2seq":
        train, validation = task.keep(train), task.keep(validation)
        if not train:
            raise data_files.DataError(
                f"--data: no pair has both sides within --max-length "
                f"{config['max_length']} tokens")
    task.check(train)
    if validation:
        task.check(validation, training=False)

    import keras

    out = args.out
    os.makedirs(out, exist_ok=True)
    run = stored or {
        "kerasrnn_run": 1, "task": args.task, "assets": task.assets,
        "data": "builtin" if args.data == "builtin"
        else os.path.abspath(args.data),
        "examples": {"train": len(train), "validation": len(validation)},
    }
    run.update(config=config, status="training")
    atomic_write_text(os.path.join(out, RUN), json.dumps(run, indent=1))

    keras.utils.set_random_seed(config["seed"])
    model = task.build()
    verbose = args.verbose if args.verbose is not None else (
        1 if sys.stdout.isatty() else 2)
    start = time.perf_counter()
    task.train(model, train, validation, out, verbose)
    seconds = time.perf_counter() - start
    records = tasks.read_log(os.path.join(out, "history.json"))
    stopped = len(records) < config["epochs"]
    metrics = task.evaluate(model, validation or train)

    partial = os.path.join(out, ".partial-" + MODEL)
    model.save(partial)
    os.replace(partial, os.path.join(out, MODEL))
    _plot(records, out, args.task)
    run.update(status="done", epochs_trained=len(records),
               stopped_early=stopped, seconds=round(seconds, 1),
               metrics={k: float(v) for k, v in metrics.items()},
               scored_on="validation" if validation else "train")
    atomic_write_text(os.path.join(out, RUN), json.dumps(run, indent=1))
    print(f"trained {len(records)} epochs{' (stopped early)' * stopped} in "
          f"{seconds:.1f} s; {run['scored_on']}: "
          f"{json.dumps(run['metrics'])}")
    print(f"wrote {os.path.join(out, MODEL)}, "
          f"{os.path.join(out, 'curve.png')}")
    return 0


def _plot(records, out, name):
    from kerasrnn.diagnostics.plots import plot_history

    series = {key: [r[key] for r in records] for key in ("loss", "val_loss")
              if records and key in records[0]}
    partial = os.path.join(out, ".partial-curve.png")
    plot_history(series, partial, title=f"kerasrnn train {name}")
    os.replace(partial, os.path.join(out, "curve.png"))


def evaluate_command(args):
    run, task, model = _trained(args.directory)
    rows = _rows(run["task"], args)
    if run["task"] == "seq2seq":
        rows = task.keep(rows)
        if not rows:
            raise data_files.DataError("--data: no pair within the run's "
                                       "max_length")
    task.check(rows, training=False)
    metrics = task.evaluate(model, rows)
    print(json.dumps({k: float(v) for k, v in metrics.items()}))
    return 0


def generate_command(args):
    run, task, model = _trained(args.directory)
    options = {name: getattr(args, name) for name in
               ("method", "max_length", "beam_width", "temperature", "seed")
               if getattr(args, name) is not None}
    if run["task"] in ("classifier", "tagger") and options:
        raise UsageError(f"a {run['task']} takes no search options; got "
                         f"--{next(iter(options)).replace('_', '-')}")
    for line in task.generate(model, args.texts, options):
        print(line)
    return 0


def export_command(args):
    from kerasrnn.export import cli as export_cli

    read_run(args.directory)
    model = os.path.join(args.directory, MODEL)
    if not os.path.isfile(model):
        raise UsageError(f"{args.directory} holds no {MODEL} yet")
    default = "onnx" if args.to == "onnx" else os.path.join(
        "saved_model", "1")
    argv = [model, args.dest or os.path.join(args.directory, default)]
    argv += ["--no-verify"] * args.no_verify
    if args.to == "onnx":
        export_cli.onnx_main(argv + ["--quantize"] * args.quantize)
    elif args.quantize:
        raise UsageError("--quantize applies to --to onnx")
    else:
        export_cli.saved_model_main(argv)
    return 0


def serve_command(args):
    from kerasrnn_serving.__main__ import main as serving_main

    directory = args.directory
    if os.path.exists(os.path.join(directory, RUN)):
        directory = os.path.join(directory, "onnx")
    if not os.path.isfile(os.path.join(directory, "manifest.json")):
        raise UsageError(f"{args.directory} holds no export (manifest.json);"
                         " run kerasrnn export first")
    return serving_main(["serve", directory, *args.arguments]) or 0


def bench_command(args):
    """Median time of a forward pass (generation for seq2seq) on a batch
    of built-in rows."""
    run, task, model = _trained(args.directory)
    rows = data_files.builtin(run["task"], args.batch_size)
    if run["task"] == "seq2seq":
        sources = [row[0] for row in rows]
        call = lambda: task.generate(model, sources, {})  # noqa: E731
        unit, count = "sentences", len(sources)
    elif run["task"] == "lm":
        ids = np.resize(task.encode(rows), (args.batch_size,
                                            run["config"]["num_steps"]))
        call = lambda: model.predict_on_batch(ids)  # noqa: E731
        unit, count = "tokens", ids.size
    else:
        x, _ = task.encode(rows) if run["task"] == "tagger" else (
            task.encode_texts(row[0] for row in rows), None)
        call = lambda: model.predict_on_batch(x)  # noqa: E731
        unit, count = "examples", len(x)
    call()                                               # trace
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    median = float(np.median(times))
    print(json.dumps({"task": run["task"], "batch_size": args.batch_size,
                      "median_ms": round(1000 * median, 2),
                      f"{unit}_per_second": round(count / median, 1)}))
    return 0


def main(argv=None):
    """The ``kerasrnn`` console script; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
        return args.handler(args)
    except (UsageError, data_files.DataError, ValueError, OSError) as error:
        message = " ".join(str(error).split())
        print(f"kerasrnn: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
