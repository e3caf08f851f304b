"""Thread defaults follow the CPUs a process may use (its affinity mask and its cgroup's CPU
quota), not the machine's count."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from imgpipe.config import cgroup_cpu_quota

_CHILD = (
    "from imgpipe.config import Settings\ns = Settings()\nprint(s.workers, s.render_concurrency)\n"
)


def test_a_process_pinned_to_one_cpu_defaults_to_one_worker_and_one_render() -> None:
    # As in a container given a cpuset of one core on a larger machine.
    child = subprocess.run(
        [sys.executable, "-c", _CHILD],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}),
        env={k: v for k, v in os.environ.items() if not k.startswith("IMGPIPE_")},
        check=False,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["1", "1"]


def _cgroups(tmp_path: Path, membership: str, files: dict[str, str]) -> tuple[Path, Path]:
    """A cgroup mount under tmp_path with ``files`` (path below the mount: content), and
    a /proc/self/cgroup saying ``membership``."""
    root = tmp_path / "sys-fs-cgroup"
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content + "\n")
    member = tmp_path / "self-cgroup"
    member.write_text(membership + "\n")
    return root, member


@pytest.mark.parametrize(
    ("membership", "files", "cpus"),
    [
        # A container with `--cpus 1.5`, cgroup v2 in its own namespace: 1.5 CPUs is 2.
        ("0::/", {"cpu.max": "150000 100000"}, 2),
        # A Kubernetes pod: the pod's limit on a parent, none on the container itself.
        ("0::/kubepods/pod1/c1", {"kubepods/pod1/cpu.max": "100000 100000",
                                  "kubepods/pod1/c1/cpu.max": "max 100000"}, 1),
        ("0::/", {"cpu.max": "max 100000"}, None),
        # cgroup v1 (this project's CI machines): the cpu controller's own mount.
        ("4:cpu,cpuacct:/docker/abc", {"cpu/docker/abc/cpu.cfs_quota_us": "300000",
                                       "cpu/docker/abc/cpu.cfs_period_us": "100000"}, 3),
        ("4:cpu,cpuacct:/", {"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"},
         None),
        ("1:memory:/x", {}, None),  # no cpu controller in the membership
    ],
)  # fmt: skip
def test_a_cgroup_cpu_quota_is_read_in_whole_cpus(
    tmp_path: Path, membership: str, files: dict[str, str], cpus: int | None
) -> None:
    root, member = _cgroups(tmp_path, membership, files)
    assert cgroup_cpu_quota(root, member) == cpus


def test_no_cgroups_to_read_is_no_quota(tmp_path: Path) -> None:
    assert cgroup_cpu_quota(tmp_path, tmp_path / "missing") is None
