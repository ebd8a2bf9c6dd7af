"""Closed-loop peak throughput with wrk, cycling through pre-generated signed requests.

wrk is a C load generator (Debian package ``wrk``); it is installed with apt-get on
first use when missing. Each wrk thread takes its own slice of the request file and
should never repeat a request (a wrap-around is counted and reported), so every request is a
new MessageSid (the benchmark checks the stored row count against it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.stats import say

LUA = r"""
local lines = {}
local index = 0
-- thread_id is a global set by setup() through thread:set
local counter = 0
local threads = {}

function setup(thread)
  counter = counter + 1
  thread:set("thread_id", counter)
  table.insert(threads, thread)
end

function init(args)
  thread_count = tonumber(args[2])
  local n = 0
  for line in io.lines(args[1]) do
    n = n + 1
    if (n % thread_count) == (thread_id - 1) then
      local tab = string.find(line, "\t", 1, true)
      local sig = string.sub(line, 1, tab - 1)
      local body = string.sub(line, tab + 1)
      lines[#lines + 1] = wrk.format("POST", args[3], {
        ["Content-Type"] = "application/x-www-form-urlencoded",
        ["X-Twilio-Signature"] = sig,
      }, body)
    end
  end
  exhausted = 0
end

function request()
  index = index + 1
  if index > #lines then
    -- ran out: repeats would be duplicates (cheaper); counted and reported, never hidden
    exhausted = exhausted + 1
    index = 1
  end
  return lines[index]
end

function done(summary, latency, requests)
  local repeats = 0
  for _, t in ipairs(threads) do repeats = repeats + (t:get("exhausted") or 0) end
  local out = string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "status_errors": %d, "timeouts": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "wraparounds": %d}',
    summary.requests, summary.duration, summary.bytes, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, repeats)
  io.write("WRK_JSON " .. out .. "\n")
end
"""


def ensure_wrk() -> str:
    """The wrk binary; installs the Debian package when missing (root + apt-get)."""
    found = shutil.which("wrk")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        sys.exit(
            "wrk is not installed. Install it with: sudo apt-get install -y wrk "
            "(Debian/Ubuntu) or brew install wrk (macOS), then run the benchmark again."
        )
    say("wrk not found: installing it with `apt-get install -y wrk` (Debian package)")
    if subprocess.run([apt, "install", "-y", "-q", "wrk"], check=False).returncode != 0:
        subprocess.run([apt, "update", "-q"], check=True)
        subprocess.run([apt, "install", "-y", "-q", "wrk"], check=True)
    found = shutil.which("wrk")
    if not found:
        sys.exit("apt-get did not install wrk; install it by hand: apt-get install -y wrk")
    return found


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    wraparounds: int

    @property
    def rate(self) -> float:
        return (self.requests - self.non_2xx) / self.seconds if self.seconds else 0.0


def run_wrk(
    url: str,
    path: str,
    requests_file: Path,
    *,
    duration_s: float,
    connections: int,
    threads: int = 1,
    workdir: Path,
) -> WrkResult:
    script = workdir / "signed_requests.lua"
    script.write_text(LUA)
    cmd = [
        ensure_wrk(), "-t", str(threads), "-c", str(connections), "-d", f"{duration_s:.0f}s",
        "--timeout", "10s", "-s", str(script), url,
        "--", str(requests_file), str(threads), path,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0 or "WRK_JSON " not in done.stdout:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout} {done.stderr}")
    out = done.stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("WRK_JSON "))
    data = json.loads(line[len("WRK_JSON ") :])
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        non_2xx=data["status_errors"],
        socket_errors=data["connect_errors"] + data["read_errors"] + data["write_errors"] + data["timeouts"],
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        wraparounds=data["wraparounds"],
    )
