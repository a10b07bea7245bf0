"""The Dockerfiles stay consistent with the build (SPEC §10). No Docker engine runs here, so
this is what can be checked: every library the built binary links (its `ldd`) and every library
it loads at run time (the sonames passed to dlopen() in the source) comes from a package the
image's runtime stage installs, mapped to Debian packages with `dpkg -S`."""
import glob
import os
import re
import subprocess

from conftest import BIN

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
IN_SLIM = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g"}  # already in debian:12-slim
SANITIZERS = re.compile(r"lib(a|t|ub|l)san\.so")  # a sanitizer build links its runtime
# What the minimal Dockerfile compiles out (-DMIKCAR_WITH_QUEUE=OFF, …_SQL_POSTGRES=OFF,
# …_SQL_SCRIPT=OFF), and so does not install.
NOT_IN_MINIMAL = {"librabbitmq4", "libpq5", "libjavascriptcoregtk-4.1-0"}


def runtime_packages(dockerfile):
    text = open(os.path.join(ROOT, dockerfile)).read()
    runtime = text.split("FROM debian:12-slim", 1)[1]
    install = re.search(r"apt-get install -y --no-install-recommends(.*?)&&", runtime, re.S)
    return set(install.group(1).replace("\\", " ").split())


def owner(path):
    """The package of a library file; merged /usr means it may be registered under /lib."""
    real = os.path.realpath(path)
    for candidate in (path, real, real.replace("/usr/lib/", "/lib/", 1)):
        out = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
        if out.returncode == 0:
            return out.stdout.split(":")[0]
    raise AssertionError(f"no Debian package owns {path}")


def linked_packages(binary):
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    paths = [p for p in re.findall(r"=> (/\S+)", out) if not SANITIZERS.search(p)]
    return {owner(p) for p in paths}


def loaded_packages():
    """The packages of the sonames the source dlopen()s (libpq, JavaScriptCore)."""
    packages = set()
    for source in glob.glob(os.path.join(ROOT, "src", "**", "*.cc"), recursive=True):
        text = open(source).read()
        if "dlopen(" not in text:
            continue
        for soname in re.findall(r'"(lib[\w.+-]+\.so\.\d+)"', text):
            found = glob.glob(f"/usr/lib/*/{soname}")
            assert found, f"{soname} (dlopen()ed in {source}) is not installed here"
            packages.add(owner(found[0]))
    assert packages, "expected the dlopen()ed libraries of libpq and JavaScriptCore"
    return packages


def test_dockerfile_all_installs_every_library_linked_or_loaded():
    needed = linked_packages(BIN) | loaded_packages()
    missing = needed - runtime_packages("Dockerfile.all") - IN_SLIM
    assert not missing, f"add to Dockerfile.all's runtime stage: {sorted(missing)}"


def test_the_minimal_dockerfile_installs_what_its_configuration_links():
    needed = (linked_packages(BIN) | loaded_packages()) - NOT_IN_MINIMAL
    missing = needed - runtime_packages("Dockerfile") - IN_SLIM
    assert not missing, f"add to Dockerfile's runtime stage: {sorted(missing)}"
    extra = runtime_packages("Dockerfile") & NOT_IN_MINIMAL
    assert not extra, f"the minimal image compiles these out: {sorted(extra)}"
