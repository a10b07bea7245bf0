"""Dockerfile.all stays consistent with the build (SPEC §10): every library the built binary
links comes from a package its runtime stage installs. No Docker engine runs here, so this is
what can be checked: the binary's `ldd`, mapped to Debian packages with `dpkg -S`."""
import os
import re
import subprocess

from conftest import BIN

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
IN_SLIM = {"libc6", "libgcc-s1", "libstdc++6"}  # already in debian:12-slim


def runtime_packages(dockerfile):
    text = open(os.path.join(ROOT, dockerfile)).read()
    runtime = text.split("FROM debian:12-slim", 1)[1]
    install = re.search(r"apt-get install -y --no-install-recommends(.*?)&&", runtime, re.S)
    return set(install.group(1).replace("\\", " ").split())


def linked_packages(binary):
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    packages = set()
    for path in re.findall(r"=> (/\S+)", out):
        owner = subprocess.run(["dpkg", "-S", os.path.realpath(path)], capture_output=True,
                               text=True)
        if owner.returncode == 0:
            packages.add(owner.stdout.split(":")[0])
    return packages


def test_dockerfile_all_installs_every_library_the_binary_links():
    missing = linked_packages(BIN) - runtime_packages("Dockerfile.all") - IN_SLIM
    assert not missing, f"add to Dockerfile.all's runtime stage: {sorted(missing)}"


def test_the_minimal_dockerfile_is_a_subset_of_the_full_one():
    assert runtime_packages("Dockerfile") <= runtime_packages("Dockerfile.all")
