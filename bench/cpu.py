"""CPU seconds used per component over a measured window (from /proc), and by everything else.

On a shared 2-core machine the throughput ceiling is CPU: this says where each
message's CPU goes (ingest, router, ..., nats-server, Postgres backends) and how
much of the machine other work took during the window.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    """utime + stime of a process (children excluded), in seconds; 0 when gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def children_of(ppid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(stat[1]) == ppid:
                out.append(int(entry.name))
    return out


def postmaster_pid(data_dir: Path) -> int | None:
    pidfile = data_dir / "postmaster.pid"
    if not pidfile.exists():
        return None
    return int(pidfile.read_text().split()[0])


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    total = sum(parts[:8])
    return (total - idle) / TICK, total / TICK


@dataclass
class CpuWindow:
    """Snapshot named groups of processes at start and end of a window."""

    groups: dict[str, list[int]]
    pg_data: Path | None = None
    start: dict[str, float] = field(default_factory=dict)
    machine_start: tuple[float, float] = (0.0, 0.0)

    def _group_cpu(self) -> dict[str, float]:
        cpu = {name: sum(proc_cpu(p) for p in pids) for name, pids in self.groups.items()}
        if self.pg_data is not None:
            master = postmaster_pid(self.pg_data)
            if master is not None:
                cpu["postgres"] = proc_cpu(master) + sum(proc_cpu(p) for p in children_of(master))
        cpu["bench (this process)"] = sum(os.times()[:2])
        # Waited-for children: wrk and the open-loop generator once they have exited.
        cpu["bench children (wrk)"] = sum(os.times()[2:4])
        return cpu

    def begin(self) -> None:
        self.start = self._group_cpu()
        self.machine_start = machine_busy()

    def end(self, units: int, unit: str = "msg") -> dict[str, object]:
        """CPU ms per unit by group, and the machine's busy CPU not accounted to any group."""
        now = self._group_cpu()
        busy, total = machine_busy()
        used = {k: now[k] - self.start.get(k, 0.0) for k in now}
        machine_used = busy - self.machine_start[0]
        wall_cpu = total - self.machine_start[1]
        ours = sum(max(0.0, v) for v in used.values())
        return {
            f"cpu_ms_per_{unit}": {k: round(v * 1000 / max(units, 1), 3) for k, v in used.items()},
            "cpu_s": {k: round(v, 2) for k, v in used.items()},
            "cpu_s_ours": round(ours, 2),
            "cpu_s_machine_busy": round(machine_used, 2),
            "cpu_s_machine_capacity": round(wall_cpu, 2),
            "cpu_s_other_work": round(max(0.0, machine_used - ours), 2),
        }
