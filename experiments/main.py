r"""recjax experiment binary: train a model on a dataset and report validation/test metrics.

  python -m experiments.main --model=ease --dataset=ml-100k --workdir=/tmp/ease \
      --data_dir=../shared/data --set l2=200

``--dataset`` takes a registry name (``--list`` prints them) or a path to your
own file/folder in one of the generic formats.  ``--config`` loads a file from
``experiments/configs/``; ``--model``/``--dataset``/``--set`` override it.  The
workdir receives config.json, metrics.jsonl, results.json and checkpoints; the
same command run again resumes where it stopped; a workdir made by another
experiment is refused (``--overwrite`` discards it).  A finished workdir holds
a loadable model under ``model/`` (``python -m experiments.recommend``).  A
failure (bad flag or value, missing, malformed or unreadable file, unwritable
workdir, too little memory) is one ``error: ...`` line on stderr and exit code 2
(bad input) or 1 (permissions, disk, memory); ``--verbosity=0`` shows the
traceback.  Only this file reads flags.
"""

from absl import app, flags, logging

from experiments import errors, experiment_flags

FLAGS = flags.FLAGS
experiment_flags.define(model_help="Model name (see --list).")
flags.DEFINE_bool("list", False, "List models and datasets, then exit.")
flags.DEFINE_bool("overwrite", False, "Discard the run a --workdir holds when it was made by a "
                  "different experiment (otherwise such a workdir is refused). Same experiment: "
                  "resumes without this flag.")


def main(argv):
  verbose = FLAGS["verbosity"].present
  paths = {"workdir": FLAGS.workdir, "dataset": FLAGS.dataset, "config": FLAGS.config,
           "data_dir": FLAGS.data_dir, "cache_dir": FLAGS.cache_dir}
  # Every user-facing failure (bad flag or config value, missing, malformed or unreadable
  # file, unwritable workdir, too little memory) is one `error:` line on stderr and a
  # non-zero exit; --verbosity re-raises for the traceback.
  with errors.one_line_errors(paths, verbose):
    _main(argv, verbose)


def _main(argv, verbose: bool):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not verbose:
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO.
  experiment_flags.join_processes()  # Before any device is touched; nothing on one process.
  from experiments import train
  from recjax.data.registry import list_datasets
  from recjax.models.registry import list_models
  if FLAGS.list:
    print("models:  ", ", ".join(list_models()))
    print("datasets:", ", ".join(list_datasets()))
    return
  experiment = train.build_experiment(FLAGS.config, FLAGS.model, FLAGS.dataset, FLAGS.set)
  if not FLAGS.workdir:
    raise app.UsageError("--workdir is required")
  errors.check_workdir(FLAGS.workdir)
  train.run_experiment(experiment, FLAGS.workdir, data_dir=FLAGS.data_dir,
                       cache_dir=FLAGS.cache_dir, download=FLAGS.download,
                       overwrite=FLAGS.overwrite, log=experiment_flags.process_log())


if __name__ == "__main__":
  app.run(main, flags_parser=errors.parse_flags)
