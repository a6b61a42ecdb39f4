"""Progress output: one line per epoch on stdout, a bar inside long epochs on stderr."""

from __future__ import annotations

import sys
import threading
import time


def _duration(seconds: float) -> str:
  """3.2s, 4m05s, 2h03m."""
  if seconds < 60:
    return f"{seconds:.1f}s"
  minutes, secs = divmod(int(seconds), 60)
  if minutes < 60:
    return f"{minutes}m{secs:02d}s"
  return f"{minutes // 60}h{minutes % 60:02d}m"


class ProgressBar:
  """A dependency-free progress bar.

  On a terminal it redraws one line; elsewhere (CI logs, files) it prints a
  short line at most every `log_every_s` seconds so long epochs stay visible.
  """

  def __init__(self, total: int, desc: str, enabled: bool = True, log_every_s: float = 30.0,
               stream=None):
    self.total = max(1, total)
    self.desc = desc
    self.enabled = enabled and total > 1
    self.stream = stream or sys.stderr
    self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
    self.log_every_s = log_every_s
    self.start = time.perf_counter()
    self.last_log = self.start
    self.done = 0

  def update(self, n: int = 1, **postfix) -> None:
    self.done += n
    if not self.enabled:
      return
    now = time.perf_counter()
    if not self.tty and now - self.last_log < self.log_every_s and self.done < self.total:
      return
    self.last_log = now
    frac = self.done / self.total
    width = 30
    bar = "#" * int(frac * width) + "." * (width - int(frac * width))
    extra = " ".join(f"{k}={v:.4g}" for k, v in postfix.items())
    rate = self.done / max(now - self.start, 1e-9)
    eta = f", ETA {_duration((self.total - self.done) / rate)}" if self.done < self.total else ""
    line = f"{self.desc} [{bar}] {self.done}/{self.total} ({rate:.1f}/s{eta}) {extra}"
    if self.tty:
      self.stream.write("\r" + line)
      if self.done >= self.total:
        self.stream.write("\n")
    else:
      self.stream.write(line + "\n")
    self.stream.flush()


class Heartbeat:
  """Says a long step is still running: `log` every `every_s` seconds until the block exits.

  For work with no countable parts the runner can see (a closed-form block
  step: an EASE solve, an ALS sweep), so a 90-second solve is not 90 silent
  seconds.  Used as ``with Heartbeat("epoch 3: block step", log): ...``.
  """

  def __init__(self, label: str, log, every_s: float = 30.0, enabled: bool = True):
    self.label = label
    self.log = log
    self.every_s = every_s
    self.enabled = enabled
    self._stop = threading.Event()
    self._thread = None

  def _run(self, start: float) -> None:
    while not self._stop.wait(self.every_s):
      self.log(f"{self.label}: still running, {_duration(time.perf_counter() - start)} so far")

  def __enter__(self):
    if self.enabled:
      self._thread = threading.Thread(target=self._run, args=(time.perf_counter(),), daemon=True)
      self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
    return False
