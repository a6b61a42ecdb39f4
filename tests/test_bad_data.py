"""Bad data, bad paths and bad flags, tried as a user would (issue 17).

Each probe runs ``python -m experiments.main`` (or ``experiments.recommend``)
on a small generated file and asserts what the user sees: a non-zero exit and
one ``error:`` line naming the file and the step or setting at fault, never a
traceback and never rc = 0 with NaN metrics.  The readers' dense id mapping
(no array sized by a raw id) is checked in-process, format by format.
"""

from __future__ import annotations

import json
import os
import textwrap

import numpy as np
import pytest

from bad_input import assert_clear_error, run_cli
from recjax.data import readers, registry
from recjax.data.types import DataFormatError

HUGE = 10**18  # A 6.94 EiB arange when an id sizes an array.


def _write(tmp_path, name, text):
  path = tmp_path / name
  path.write_text(text)
  return path


def _train(tmp_path, dataset, *sets, model="popularity", workdir=None, module="experiments.main",
           env=None):
  args = [f"--model={model}", f"--dataset={dataset}",
          f"--workdir={workdir or tmp_path / 'wd'}"]
  for s in sets:
    args += ["--set", s]
  return run_cli(args, module=module, env=env)


def _no_nan(text: str):
  """json.loads that fails on NaN/Infinity (json writes them as bare NaN, or "nan" strings)."""
  def refuse(token):
    raise AssertionError(f"{token} in {text[:300]}")
  assert '"nan"' not in text.lower(), text[:3000]
  return json.loads(text, parse_constant=refuse)


# ---------------------------------------------------------------------------
# Nobody to evaluate: a clear stop, or training that says so -- never NaN.
# ---------------------------------------------------------------------------


def test_every_user_with_one_item_stops_with_the_reason(tmp_path):
  # Implicit data (no min count by default): the held-out users cannot be split.
  path = _write(tmp_path, "one.csv", "".join(f"u{u},i{u % 7}\n" for u in range(30)))
  proc = _train(tmp_path, path, "metrics=recall@5")
  assert_clear_error(proc, str(path), "nothing to evaluate", "held-out", "min_user_count",
                     "heldout_users=0")
  assert not (tmp_path / "wd" / "results.json").exists()


def test_two_users_train_on_everyone_and_say_there_is_no_evaluation(tmp_path):
  path = _write(tmp_path, "two.csv", "".join(f"{u},{i},5\n" for u in range(2) for i in range(10)))
  proc = _train(tmp_path, path, "metrics=recall@5")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr and "nan" not in (proc.stdout + proc.stderr).lower()
  assert "no validation users" in proc.stdout + proc.stderr
  results = _no_nan((tmp_path / "wd" / "results.json").read_text())
  assert results["validation"] is None and results["test"] is None
  assert results["evaluation"].startswith("none:")
  for line in (tmp_path / "wd" / "metrics.jsonl").read_text().splitlines():
    _no_nan(line)


def test_heldout_users_that_leave_no_training_user(tmp_path):
  path = _write(tmp_path, "two.csv", "".join(f"{u},{i},5\n" for u in range(2) for i in range(10)))
  proc = _train(tmp_path, path, "heldout_users=1")
  assert_clear_error(proc, str(path), "heldout_users=1", "no training user")


# ---------------------------------------------------------------------------
# A filter (or the reader) that empties the data names the file and the step.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name,text,needles", [
    ("empty.csv", "", ["empty file"]),
    ("header.csv", "userId,movieId,rating\n", ["only a header line"]),
    ("low.csv", "".join(f"{u},{i},2\n" for u in range(3) for i in range(4)),
     ["binarize_threshold=4", "12 events", "set it to None"]),
    ("onerated.csv", "".join(f"{u},{i},{5 if i == 0 else 1}\n" for u in range(20)
                             for i in range(5)),
     ["min_user_count=5", "drops every user", "the most is 1"]),
], ids=["empty", "header-only", "all-below-threshold", "one-rated-item-each"])
def test_a_step_that_empties_the_data_says_which(tmp_path, name, text, needles):
  path = _write(tmp_path, name, text)
  line = assert_clear_error(_train(tmp_path, path), str(path), *needles)
  assert "0 validation + 0 test users" not in line


# ---------------------------------------------------------------------------
# Ids are mapped densely on read: no allocation sized by a raw id.
# ---------------------------------------------------------------------------


def test_huge_item_id_in_a_counted_list_trains_through_the_binary(tmp_path):
  lines = [f"4 {u % 5} {(u + 1) % 5} {(u + 2) % 5} {HUGE if u % 3 == 0 else 7}"
           for u in range(40)]
  path = _write(tmp_path, "lists.txt", "\n".join(lines) + "\n")
  proc = _train(tmp_path, path, "heldout_users=0", "metrics=recall@5")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr
  ids = (tmp_path / "wd" / "model" / "ids.json").read_text()
  assert str(HUGE) in ids


def test_counted_lists_number_item_ids_densely(tmp_path):
  p = _write(tmp_path, "users.dat", f"3 1 2 {HUGE}\n2 0 1\n3 0 1 {HUGE}\n")
  x = readers.read_counted_lists(p)
  assert x.shape == (3, 4) and x.item_ids.tolist() == [0, 1, 2, HUGE]
  assert x.items.tolist() == [1, 2, 3, 0, 1, 0, 1, 3]
  with pytest.raises(DataFormatError, match=r"neg.dat:1: expected a non-negative item id; got -4"):
    readers.read_counted_lists(_write(tmp_path, "neg.dat", "1 -4\n"))
  # With the dataset's item count (citeulike) the id is checked against it, not allocated.
  with pytest.raises(DataFormatError, match=rf"users.dat:1: expected an item id in \[0, 5\); got {HUGE}"):
    readers.read_counted_lists(p, n_cols=5)


@pytest.mark.parametrize("text,kind,users,items", [
    (f"{HUGE},i1,5\n-3,i2,4\n{HUGE},i2,3\n", "table", [-3, HUGE], ["i1", "i2"]),
    (f"u1\t{HUGE}\t1\nu2\t-9\t1\n", "table", ["u1", "u2"], [-9, HUGE]),
    (f"{HUGE} 1 2 3\n-5 {HUGE} 2\n7 -1\n", "user_lines", [-5, 7, HUGE], [-1, 1, 2, 3, HUGE]),
], ids=["triples-huge-negative-users", "triples-huge-negative-items", "user-lines"])
def test_tables_and_user_lines_map_huge_and_negative_ids_densely(tmp_path, text, kind, users,
                                                                  items):
  p = _write(tmp_path, "data.txt", text)
  assert readers.sniff_format(p) == kind
  x = registry.load_dataset(str(p)).interactions
  assert x.user_ids.tolist() == users and x.item_ids.tolist() == items


def test_raw_id_formats_without_a_count_refuse_a_huge_id_at_its_line(tmp_path):
  a = _write(tmp_path, "train.txt", "0 1 2\n1 3\n")
  b = _write(tmp_path, "test.txt", f"0 4\n2 {HUGE}\n")
  with pytest.raises(DataFormatError, match=rf"test.txt:2: expected 0-based item ids .*got item "
                     rf"id {HUGE} while 5 distinct item ids occur.*ids='sorted'"):
    readers.read_user_lines([a, b], ids="raw")
  c = _write(tmp_path, "users.txt", f"0 1\n{HUGE} 2\n")
  with pytest.raises(DataFormatError, match=r"users.txt:2: expected 0-based user ids"):
    readers.read_user_lines(c, ids="raw", n_items=3)
  # Given counts bound the ids instead; ids="sorted" numbers them densely.
  with pytest.raises(DataFormatError, match=r"test.txt:2: expected an item id in \[0, 9\)"):
    readers.read_user_lines([a, b], ids="raw", n_items=9)
  assert readers.read_user_lines([a, b]).item_ids.tolist() == [1, 2, 3, 4, HUGE]
  # A sparse but plausible id space (a vocabulary of 8,000 words) is still read as raw ids.
  assert readers.read_user_lines(_write(tmp_path, "ok.txt", "0 7999\n3 1\n"), ids="raw").shape \
      == (4, 8000)


def test_content_word_ids_without_a_vocabulary_are_bounded(tmp_path):
  p = _write(tmp_path, "mult.dat", f"1 0:1\n2 1:1 {HUGE}:2\n")
  with pytest.raises(DataFormatError, match=r"mult.dat:2: expected 0-based word ids.*vocabulary"):
    readers.read_lda_c(p)
  with pytest.raises(DataFormatError, match=r"mult.dat:2: expected a word id in \[0, 4\)"):
    readers.read_lda_c(p, n_words=4)
  assert readers.read_lda_c(_write(tmp_path, "ok.dat", "1 7999:1\n")).shape == (1, 8000)


@pytest.mark.parametrize("train,test", [
    (f"0 1 2 {HUGE}\n1 2\n", f"0 {HUGE} 5\n1 7\n"),  # One line per user.
    (f"0,1\n0,2\n0,{HUGE}\n1,2\n", f"0,{HUGE}\n0,5\n1,7\n"),  # Triples.
], ids=["user-lines", "triples"])
def test_given_split_folder_with_huge_ids(tmp_path, train, test):
  folder = tmp_path / "mine"
  folder.mkdir()
  (folder / "train.txt").write_text(train)
  (folder / "test.txt").write_text(test)
  ds = registry.load_dataset(str(folder))
  assert ds.interactions.item_ids.tolist() == [1, 2, 5, 7, HUGE]
  parts = ds.predefined_splits["given"]
  assert all(p.n_items == 5 for p in parts)


# ---------------------------------------------------------------------------
# Paths that cannot be read or written: one line naming the path and the problem.
# ---------------------------------------------------------------------------

# Runs experiments.main with open() (or mkdir) refusing one path as an unreadable file or a
# read-only folder does, so the probe holds when the tests run as root (chmod stops no read).
_DENY = textwrap.dedent("""
    import builtins, io, os, runpy
    target = os.path.abspath(os.environ["DENY_PATH"])
    def denied(path):
      return os.path.abspath(os.fspath(path)).startswith(target)
    _open, _mkdir = builtins.open, os.mkdir
    def open_(file, *a, **k):
      if isinstance(file, (str, os.PathLike)) and denied(file):
        raise PermissionError(13, "Permission denied", os.fspath(file))
      return _open(file, *a, **k)
    def mkdir(path, *a, **k):
      if denied(path):
        raise PermissionError(13, "Permission denied", os.fspath(path))
      return _mkdir(path, *a, **k)
    builtins.open = io.open = open_
    os.mkdir = mkdir
    if os.environ.get("RAISE_MEMORY"):
      import recjax.data.pipeline as pipeline
      def ranking_split(*a, **k):
        raise MemoryError("Unable to allocate 6.94 EiB for an array with shape "
                          "(1000000000000000000,) and data type int64")
      pipeline.ranking_split = ranking_split
    runpy.run_module(os.environ["DENY_MODULE"], run_name="__main__", alter_sys=True)
""")


def _denied(tmp_path, args, deny, module="experiments.main", **extra_env):
  (tmp_path / "deny_probe.py").write_text(_DENY)
  env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
         "DENY_PATH": str(deny), "DENY_MODULE": module, **extra_env}
  return run_cli(args, module="deny_probe", env=env)


@pytest.fixture
def data(tmp_path):
  return _write(tmp_path, "data.csv", "".join(f"{u},{i}\n" for u in range(30) for i in range(6)))


def test_unreadable_data_file(tmp_path, data):
  args = ["--model=popularity", f"--dataset={data}", f"--workdir={tmp_path / 'wd'}",
          "--set", "metrics=recall@5"]
  line = assert_clear_error(_denied(tmp_path, args, data), str(data), "permission denied",
                            "--dataset")
  assert "Errno" not in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file")
def test_chmod_000_data_file(tmp_path, data):
  data.chmod(0)
  assert_clear_error(_train(tmp_path, data, "metrics=recall@5"), str(data), "permission denied")


def test_workdir_in_a_read_only_folder(tmp_path, data):
  ro = tmp_path / "ro"
  ro.mkdir()
  args = ["--model=popularity", f"--dataset={data}", f"--workdir={ro / 'wd'}",
          "--set", "metrics=recall@5"]
  if os.geteuid() == 0:
    proc = _denied(tmp_path, args, ro / "wd")
  else:
    ro.chmod(0o555)
    proc = run_cli(args)
  assert_clear_error(proc, str(ro / "wd"), "permission denied")


@pytest.mark.parametrize("where", ["file", "below-a-file"])
def test_a_file_where_the_workdir_goes(tmp_path, data, where):
  blocker = _write(tmp_path, "results", "not a folder")
  workdir = blocker if where == "file" else blocker / "run1"
  proc = _train(tmp_path, data, "metrics=recall@5", workdir=workdir)
  assert_clear_error(proc, f"--workdir {workdir}", "not a folder")


def test_out_of_memory_is_one_line(tmp_path, data):
  args = ["--model=popularity", f"--dataset={data}", f"--workdir={tmp_path / 'wd'}",
          "--set", "metrics=recall@5"]
  proc = _denied(tmp_path, args, tmp_path / "nothing", RAISE_MEMORY="1")
  assert_clear_error(proc, "out of memory", "6.94 EiB")


# ---------------------------------------------------------------------------
# Bad flags and config values: one line and exit code 2, not the usage text.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("args,needles", [
    (["--model=popularity", "--dataset=x", "--workdir=w", "--set", "nosuch=1"],
     ["no config field 'nosuch'"]),
    (["--model=popularity", "--dataset=x", "--nosuchflag=3"], ["nosuchflag"]),
], ids=["bad-override", "unknown-flag"])
def test_bad_flags_are_one_line(args, needles):
  proc = run_cli(args)
  assert proc.returncode == 2
  assert_clear_error(proc, *needles)
  assert "--workdir:" not in proc.stderr  # The flags' help text is not printed.


def test_verbosity_keeps_the_traceback(tmp_path):
  path = _write(tmp_path, "empty.csv", "")
  proc = run_cli(["--model=popularity", f"--dataset={path}", f"--workdir={tmp_path / 'wd'}",
                  "--verbosity=0"])
  assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_recommend_errors_are_one_line(tmp_path):
  proc = run_cli([f"--workdir={tmp_path}", "--k=3"], module="experiments.recommend")
  assert proc.returncode == 2
  assert_clear_error(proc, "give exactly one of --users")


def test_error_lines_keep_the_raisers_own_one_line_messages():
  import errno  # pylint: disable=import-outside-toplevel
  from experiments import errors  # pylint: disable=import-outside-toplevel
  from recjax.ops.memory import InsufficientMemory  # pylint: disable=import-outside-toplevel
  from recjax.train.writer import DiskWriteError  # pylint: disable=import-outside-toplevel
  full = DiskWriteError(errno.ENOSPC, "/w/3: no space left on device; free space and rerun", "/w/3")
  assert errors.describe(full, {"workdir": "/w"}) == str(full)
  short = InsufficientMemory("ease needs 12 GB for its Gram matrix; 3 GB are free")
  assert errors.describe(short, {}) == str(short) and errors.exit_code(short) == 1
  denied = PermissionError(13, "Permission denied", "/w/config.json")
  assert errors.describe(denied, {"workdir": "/w"}).startswith(
      "/w/config.json: permission denied: the workdir (--workdir /w)")
