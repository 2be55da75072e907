import os
import subprocess

import pytest


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: intra-op threads only add overhead, badly so on a loaded 2-core box."""
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def small_tmpfs(tmp_path):
    """``small_tmpfs("2m")`` mounts a tmpfs of that size at ``tmp_path / "small"`` for a real
    disk-full test (root only: skips elsewhere, where injected ENOSPC tests cover the same paths),
    and unmounts it afterwards (lazily if still busy)."""
    mounted = []

    def mount(size: str):
        if os.geteuid() != 0:
            pytest.skip(f"mounting a {size} tmpfs needs root; the injected-ENOSPC tests cover the same paths")
        mnt = tmp_path / "small"
        mnt.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode})")
        mounted.append(mnt)
        return mnt

    yield mount
    for mnt in mounted:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)  # busy: detach lazily
