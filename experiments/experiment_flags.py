"""The flags every training binary shares: which experiment, on which data, into which workdir.

`define(config_help=..., workdir_help=...)` defines ``--config``, ``--model``,
``--dataset``, ``--workdir``, ``--data_dir``, ``--cache_dir``, ``--download``
and ``--set`` (once per process) (experiments.main, beta_select, crae_bleu), so
their meaning and help text cannot drift apart; each binary adds its own.
"""

from __future__ import annotations

from absl import flags

SET_HELP = ("Config override key=value (model, data or train field; prefix model./data./train. "
            "to disambiguate: a key of two groups is refused without one). Repeatable. For data "
            "fields 'auto' is the dataset's default and 'none' turns a step off "
            "(binarize_threshold=none: no binarization; heldout_users=none or 0: train on every "
            "user).")


def define(config_help: str = "Optional experiments/configs/*.py file with get_config().",
           workdir_help: str = "Output directory: results, metrics, checkpoints.",
           model_help: str = "Model name (see experiments.main --list).") -> None:
  """Defines the shared flags (with this binary's help for --config, --workdir, --model).

  Once per process: a second call (two binaries imported by one test run) keeps
  the first definitions.
  """
  if "config" in flags.FLAGS:
    return
  flags.DEFINE_string("config", None, config_help)
  flags.DEFINE_string("model", None, model_help)
  flags.DEFINE_string("dataset", None, "Dataset name (see experiments.main --list) or a path to "
                      "a data file/folder; overrides the config's.")
  flags.DEFINE_string("workdir", None, workdir_help)
  flags.DEFINE_string("data_dir", None, "Where datasets are looked up first "
                      "(then $RECJAX_DATA_DIR, then the cache dir).")
  flags.DEFINE_string("cache_dir", None,
                      "Download cache (default $RECJAX_CACHE_DIR or ~/.cache/recjax).")
  flags.DEFINE_bool("download", True, "Download a missing dataset when its licence allows.")
  flags.DEFINE_multi_string("set", [], SET_HELP)
  flags.DEFINE_string("coordinator", None, "Multi-process runs: host:port of process 0's "
                      "coordinator (default $JAX_COORDINATOR_ADDRESS). Unset with one process: an "
                      "ordinary single-process run.")
  flags.DEFINE_integer("num_processes", None, "Multi-process runs: how many processes take part "
                       "(default $JAX_NUM_PROCESSES; 0: let JAX detect a SLURM / Open MPI job).")
  flags.DEFINE_integer("process_id", None, "Multi-process runs: this process's id in "
                       "[0, num_processes) (default $JAX_PROCESS_ID). Process 0 writes the "
                       "workdir's files.")
  flags.DEFINE_string("compilation_cache", "~/.cache/recjax/xla",
                      "JAX's persistent compilation cache: compiled programs are kept here and "
                      "reloaded by later runs (a WMF fit's first iteration is mostly compiling). "
                      "'' turns it off; $JAX_COMPILATION_CACHE_DIR, when set, wins.")


def use_compilation_cache(path: str | None) -> str | None:
  """Points JAX's persistent compilation cache at `path` (every program, however quick to
  compile); returns the folder used, None when off."""
  import os  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  folder = os.environ.get("JAX_COMPILATION_CACHE_DIR") or (
      os.path.expanduser(path) if path else None)
  if folder:
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return folder


def join_processes() -> bool:
  """Joins the multi-process run the flags (or environment) describe, before any device is used.

  Returns whether this is a multi-process run; on one only process 0 prints.
  """
  from recjax.train import distributed  # pylint: disable=import-outside-toplevel
  FLAGS = flags.FLAGS
  use_compilation_cache(FLAGS.compilation_cache)
  return distributed.initialize(FLAGS.coordinator, FLAGS.num_processes, FLAGS.process_id)


def process_log():
  """`print` on process 0 (or a single process), silence on the others."""
  import jax  # pylint: disable=import-outside-toplevel
  return print if jax.process_index() == 0 else (lambda *args, **kwargs: None)


def define_out(help_text: str = "Output PNG path.") -> None:
  """``--out`` of the figure binaries (plot_recall, plot_sequence_figure), once per process."""
  if "out" not in flags.FLAGS:
    flags.DEFINE_string("out", None, help_text)
