"""experiments.pool: parsing, parallel runs, failures, skipping finished workdirs, the deadline,
stopping the pool itself."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from experiments import pool


def _run(tmp_path, text, **kw):
  kw.setdefault("poll_s", 0.02)
  return pool.run_pool(pool.parse_jobs(text), log_dir=tmp_path / "logs", echo=lambda *_: None, **kw)


def test_parse_skips_comments_and_names_bad_lines():
  jobs = pool.parse_jobs("# grid\n\na echo 1\nb  python -m x --workdir=w/b --config=c.py\n")
  assert [(j.name, j.line) for j in jobs] == [("a", 3), ("b", 4)]
  assert jobs[1].workdir == "w/b" and jobs[1].group == "c.py" and jobs[0].group is None
  with pytest.raises(ValueError, match=r"grid.txt:2: job name 'a' is also on line 1"):
    pool.parse_jobs("a echo 1\na echo 2\n", "grid.txt")
  with pytest.raises(ValueError, match=r"<jobs>:1: job name 'x/y'"):
    pool.parse_jobs("x/y echo 1\n")
  with pytest.raises(ValueError, match=r"<jobs>:1: job 'lonely' has no command"):
    pool.parse_jobs("lonely\n")
  with pytest.raises(ValueError, match=r"<jobs>:1: cannot split"):
    pool.parse_jobs("q echo 'unclosed\n")


def test_jobs_overlap_and_failures_do_not_stop_the_others(tmp_path):
  marks = tmp_path / "marks"
  marks.mkdir()
  # Each job records when it starts and ends; with parallel=3 all three overlap.
  text = "".join(f"j{i} date +%s.%N > {marks}/s{i}; sleep 0.6; date +%s.%N > {marks}/e{i}\n"
                 for i in range(3)) + "bad exit 3\n"
  records = _run(tmp_path, text, parallel=3)
  by = {r["name"]: r for r in records}
  assert by["bad"]["status"] == "failed" and by["bad"]["rc"] == 3
  assert all(by[f"j{i}"]["status"] == "finished" for i in range(3))
  starts = [float((marks / f"s{i}").read_text()) for i in range(3)]
  ends = [float((marks / f"e{i}").read_text()) for i in range(3)]
  assert max(starts) < min(ends)  # all three ran at once
  summary = [json.loads(l) for l in (tmp_path / "logs" / "summary.jsonl").read_text().splitlines()]
  assert sorted(r["name"] for r in summary) == ["bad", "j0", "j1", "j2"]


def test_output_goes_to_the_log_and_done_workdirs_are_skipped(tmp_path):
  done = tmp_path / "done"
  done.mkdir()
  (done / "results.json").write_text("{}")
  records = _run(tmp_path, f"a echo hello # --workdir={done}\n"
                           f"b echo world # --workdir={tmp_path}/new\n", parallel=1)
  assert [(r["name"], r["status"]) for r in records] == [("a", "skipped"), ("b", "finished")]
  assert (tmp_path / "logs" / "b.log").read_text().splitlines()[1:] == ["world"]
  assert not (tmp_path / "logs" / "a.log").exists()
  records = _run(tmp_path, f"a echo again # --workdir={done}\nb echo twice\n", parallel=1,
                 skip_done=False)
  assert [r["status"] for r in records] == ["finished", "finished"]
  log = (tmp_path / "logs" / "b.log").read_text().splitlines()  # the rerun appended
  assert [l for l in log if not l.startswith("===")] == ["world", "twice"]


def test_deadline_stops_running_jobs_and_skips_what_cannot_finish(tmp_path):
  # 'first' shows that a --config=g job takes ~0.8 s; 'second' (same group) cannot end before
  # the 1.2 s deadline and is not started; 'other' has no precedent, starts, and is stopped.
  t0 = time.monotonic()
  records = _run(tmp_path, "first sleep 0.8 # --config=g\n"
                           "second sleep 0.8 # --config=g\n"
                           "other sleep 30\n", parallel=1, deadline_s=1.2, grace_s=1.0)
  by = {r["name"]: r for r in records}
  assert by["first"]["status"] == "finished"
  assert by["second"]["status"] == "not-started"
  assert by["other"]["status"] == "stopped" and by["other"]["rc"] != 0
  assert by["other"]["by"] == "deadline" and "by" not in by["first"]
  assert time.monotonic() - t0 < 10


def test_pin_cores_runs_slot_i_on_core_i(tmp_path):
  cores = sorted(os.sched_getaffinity(0))
  script = "python -c 'import os; print(sorted(os.sched_getaffinity(0)))'"
  records = _run(tmp_path, f"p0 {script}\n", parallel=1, pin_cores=True)
  assert records[0]["status"] == "finished"
  assert (tmp_path / "logs" / "p0.log").read_text().splitlines()[-1] == str([cores[0]])
  with pytest.raises(ValueError, match="only .* cores are usable"):
    _run(tmp_path, f"p0 {script}\n", parallel=len(cores) + 1, pin_cores=True)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signalled_pool_stops_its_jobs_and_exits_128_plus_the_signal(tmp_path, sig):
  # The jobs run in sessions of their own, which a terminal's Ctrl-C does not reach: the pool
  # must stop them itself, or they run on as orphans after it is gone.
  jobs = tmp_path / "jobs.txt"
  jobs.write_text(f"long echo $$ > {tmp_path}/pid; exec sleep 60\nnext echo never\n")
  logs = tmp_path / "logs"
  proc = subprocess.Popen([sys.executable, "-m", "experiments.pool", f"--jobs={jobs}",
                           f"--logs={logs}", "--grace_s=5"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  pid_file = tmp_path / "pid"
  end = time.monotonic() + 60
  while not (pid_file.exists() and pid_file.read_text().strip()) and time.monotonic() < end:
    time.sleep(0.05)
  job_pid = int(pid_file.read_text())
  proc.send_signal(sig)
  out, _ = proc.communicate(timeout=30)
  assert proc.returncode == 128 + sig.value, out
  assert f"{sig.name}: stopping the running jobs" in out
  with pytest.raises(ProcessLookupError):  # the job is gone, not orphaned
    os.kill(job_pid, 0)
  summary = [json.loads(l) for l in (logs / "summary.jsonl").read_text().splitlines()]
  assert [(r["name"], r["status"], r.get("by")) for r in summary] == [
      ("long", "stopped", sig.name), ("next", "not-started", sig.name)]
  assert not (logs / "next.log").exists()


def test_done_jobs_are_recorded_in_the_ledger(tmp_path):
  runs, book = tmp_path / "w", tmp_path / "ledger.jsonl"

  def job(name, value):
    w = runs / name
    return (f"{name} mkdir -p {w} && echo '{{\"model\": \"m\", \"train_config\": {{\"epochs\": 1}}}}'"
            f" > {w}/config.json && echo '{{\"test\": {{\"x\": {value}}}}}' > {w}/results.json"
            f" # --workdir={w}\n")

  text = job("a", 0.5) + f"b exit 1 # --workdir={runs}/b\n"
  records = _run(tmp_path, text, parallel=1, ledger=str(book))
  by = {r["name"]: r for r in records}
  assert by["a"]["ledger"] is True and "ledger" not in by["b"]
  lines = [json.loads(l) for l in book.read_text().splitlines()]
  assert [(r["workdir"], r["test"]) for r in lines] == [(str(runs / "a"), {"x": 0.5})]
  # The run changed under its record: the pool reports it, records nothing, and goes on.
  (runs / "a" / "results.json").write_text('{"test": {"x": 0.75}}')
  again = _run(tmp_path, text, parallel=1, ledger=str(book))
  assert [(r["name"], r["status"], r.get("ledger")) for r in again][:1] == [("a", "skipped", False)]
  assert "differs from its ledger record" in (tmp_path / "logs" / "a.log").read_text()
  assert json.loads(book.read_text())["test"] == {"x": 0.5}
  # On a fresh machine (the workdir gone) the recorded job is skipped, not run again.
  for f in (runs / "a").iterdir():
    f.unlink()
  (runs / "a").rmdir()
  fresh = _run(tmp_path, text, parallel=1, ledger=str(book))
  assert [(r["name"], r["status"], r.get("by")) for r in fresh][:1] == [("a", "skipped", "ledger")]
  assert not (runs / "a").exists()
