"""Which machine a result came from, and how busy it was: identity for merging, /proc for noise flags.

The machine id is built from the CPU model, the core count and the OS, never the host name, so results
from two machines of the same kind land in the same folder and results from different kinds do not.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# x86-64 instruction-set levels in the order the frameworks' caps use them; each implies the ones before it.
ISA_LEVELS = ("SSE4_1", "SSE4_2", "AVX", "AVX2", "AVX512")
_ISA_FLAGS = {"SSE4_1": "sse4_1", "SSE4_2": "sse4_2", "AVX": "avx", "AVX2": "avx2", "AVX512": "avx512f"}


def cpu_isa(flags: set[str] | None = None) -> str:
    """The highest of ISA_LEVELS this CPU offers (from /proc/cpuinfo's flags), or the architecture's name
    (aarch64, arm64) where there is no x86 level to name."""
    if flags is None:
        flags = set()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
        except OSError:
            pass
    offered = [level for level in ISA_LEVELS if _ISA_FLAGS[level] in flags]
    return offered[-1] if offered else platform.machine()


def capped_isa(cap: str | None, cpu: str | None = None) -> str:
    """The level code runs at when a framework is capped at ``cap`` (one of ISA_LEVELS, any case; None or
    unknown: no cap) on a CPU offering ``cpu``: the lower of the two."""
    cpu = cpu_isa() if cpu is None else cpu
    cap = (cap or "").upper()
    if cpu not in ISA_LEVELS or cap not in ISA_LEVELS:
        return cpu
    return ISA_LEVELS[min(ISA_LEVELS.index(cpu), ISA_LEVELS.index(cap))]


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, as a container or taskset sets it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity masks on this OS
        return os.cpu_count() or 1


def describe() -> dict:
    """What machine.json records."""
    return {"machine_id": machine_id(), "cpu_model": cpu_model(), "cpu_isa": cpu_isa(), "cpu_count": os.cpu_count(),
            "os": platform.system(), "os_release": platform.release(), "arch": platform.machine(),
            "memory_gib": _memory_gib(), "python": platform.python_version()}


def machine_id(cpu: str | None = None, cores: int | None = None, system: str | None = None) -> str:
    """e.g. 'intel-xeon-platinum-8481c-2c-linux': readable, stable, safe as a folder name."""
    cpu = cpu_model() if cpu is None else cpu
    cpu = re.sub(r"\((r|tm)\)|\bcpu\b|@.*$", " ", cpu.lower())  # trademarks and the clock say nothing new
    slug = re.sub(r"[^a-z0-9]+", "-", cpu).strip("-") or "unknown-cpu"
    return f"{slug}-{cores or os.cpu_count()}c-{(system or platform.system()).lower()}"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2 ** 20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def load_reading() -> dict:
    """CPU jiffies (total and stolen) from /proc/stat and the load averages; {} where /proc is absent.
    mask_jiffies and mask_idle_jiffies count only the CPUs this process may run on (its affinity mask):
    the ones its workers share with whatever else runs."""
    reading = {}
    try:
        lines = Path("/proc/stat").read_text().splitlines()
        values = [int(v) for v in lines[0].split()[1:]]
        reading["cpu_jiffies"] = sum(values[:8])  # user..steal; guest time is already inside user
        reading["idle_jiffies"] = values[3] + values[4]  # idle and iowait
        reading["steal_jiffies"] = values[7] if len(values) > 7 else 0
        mask = {f"cpu{n}" for n in os.sched_getaffinity(0)}
        per_cpu = [[int(v) for v in line.split()[1:]] for line in lines[1:] if line.split()[0] in mask]
        reading["mask_jiffies"] = sum(sum(v[:8]) for v in per_cpu)
        reading["mask_idle_jiffies"] = sum(v[3] + v[4] for v in per_cpu)
    except (OSError, ValueError, IndexError):
        pass
    try:
        one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
        reading.update(loadavg_1min=float(one), loadavg_5min=float(five), loadavg_15min=float(fifteen))
    except (OSError, ValueError):
        pass
    return reading


def busy_share(before: dict, after: dict) -> float | None:
    """Share of CPU time that was not idle between two readings (None where /proc is absent)."""
    try:
        total = after["cpu_jiffies"] - before["cpu_jiffies"]
        idle = after["idle_jiffies"] - before["idle_jiffies"]
    except KeyError:
        return None
    return 1 - idle / total if total > 0 else None


def other_cpu_share(before: dict, after: dict, own_cpu_seconds: float) -> float | None:
    """Share of the CPU time of this process's CPUs (its affinity mask) between two readings that went
    neither to idle nor to the process that used ``own_cpu_seconds`` meanwhile: other processes' work
    (None where /proc is absent). The clock counts in jiffies, so a share over a few of them is coarse."""
    try:
        total = after["mask_jiffies"] - before["mask_jiffies"]
        idle = after["mask_idle_jiffies"] - before["mask_idle_jiffies"]
    except KeyError:
        return None
    if total <= 0:
        return None
    return max(0.0, (total - idle) / total - own_cpu_seconds * os.sysconf("SC_CLK_TCK") / total)


def git_commit() -> str | None:
    """The checked-out commit of the source tree twincnn runs from, if it is a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None
