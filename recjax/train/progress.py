"""Progress output: one line per epoch on stdout, a bar inside long epochs on stderr."""

from __future__ import annotations

import sys
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
