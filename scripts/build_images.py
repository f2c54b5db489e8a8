"""Build the runtime images from docker/Dockerfile, with docker or else podman.

    python3 scripts/build_images.py                      every CPU image
    python3 scripts/build_images.py sklearnserver onnxserver-gpu
    python3 scripts/build_images.py all                  the CPU images and onnxserver-gpu
    TORCH_INDEX_URL=... python3 scripts/build_images.py torchserver   (PyTorch's CPU wheel index;
                                                        huggingfaceserver too)

Each image is ``docker build -f docker/Dockerfile --target <image> .`` from the
repository root, tagged ``modelserving/<runtime>:<version>`` (the GPU one
``modelserving/onnxserver:<version>-gpu``); the script prints each image's size
and build time. Without a registry (no ``python:3.11-slim``),
``--local-base`` builds a Debian base with debootstrap from this machine's apt
mirror (root and debootstrap needed), caches it as build/images/*.tar and
builds on it. Standard library only, so it runs before any venv exists.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "docker" / "Dockerfile"
CACHE = ROOT / "build" / "images"


@dataclass(frozen=True)
class Target:
    """A target of docker/Dockerfile and the image it is tagged as."""

    #: the runtime: runtimes/<runtime>, and the image's name
    runtime: str
    #: appended to the tag (the GPU variant of a runtime)
    suffix: str = ""
    #: built on a CUDA base
    gpu: bool = False
    #: a build argument it needs from the environment (passed on by name)
    needs: str = ""

    def tag(self, repo: str, tag: str | None) -> str:
        """``REPO/<runtime>:<tag><suffix>``; the tag defaults to the runtime's version."""
        if tag is None:
            pyproject = ROOT / "runtimes" / self.runtime / "pyproject.toml"
            tag = tomllib.loads(pyproject.read_text())["project"]["version"]
        return f"{repo}/{self.runtime}:{tag}{self.suffix}"


#: Dockerfile target -> its image
IMAGES = {
    "sklearnserver": Target("sklearnserver"),
    "xgbserver": Target("xgbserver"),
    "lgbserver": Target("lgbserver"),
    "pmmlserver": Target("pmmlserver"),
    "paddleserver": Target("paddleserver"),
    "onnxserver": Target("onnxserver"),
    "mlflowserver": Target("mlflowserver"),
    "tfserver": Target("tfserver"),
    "onnxserver-gpu": Target("onnxserver", suffix="-gpu", gpu=True),
    # PyTorch's CPU wheel index (docker/Dockerfile): PyPI's torch is the CUDA build.
    "torchserver": Target("torchserver", needs="TORCH_INDEX_URL"),
    "huggingfaceserver": Target("huggingfaceserver", needs="TORCH_INDEX_URL"),
}
#: onnxruntime-gpu 1.31 is built for CUDA 13 and cuDNN 9 (libcublas.so.13).
GPU_BASE_IMAGE = "nvidia/cuda:13.0.2-cudnn-runtime-ubuntu22.04"
DEBIAN_MIRROR = "http://deb.debian.org/debian"


@dataclass
class Built:
    """One image built: its target, tag, base, build time and (uncompressed) size."""

    target: str
    tag: str
    base: str
    seconds: float
    size_bytes: int

    @property
    def size_mb(self) -> float:
        return self.size_bytes / 1e6


def detect_engine(wanted: str = "auto") -> str:
    """``docker`` when its daemon answers, else ``podman``; ``wanted`` forces one."""
    if wanted != "auto":
        return wanted
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "info"], capture_output=True).returncode == 0:
        return "docker"
    if shutil.which("podman"):
        return "podman"
    raise SystemExit("no container engine: install podman, or start a Docker daemon")


def image_exists(engine: str, ref: str) -> bool:
    done = subprocess.run([engine, "image", "inspect", ref], capture_output=True)
    return done.returncode == 0


def image_size(engine: str, ref: str) -> int:
    out = subprocess.run(
        [engine, "image", "inspect", "--format", "{{.Size}}", ref],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out.strip())


def apt_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb.debian.org when none is found)."""
    files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in files:
        text = path.read_text(errors="replace") if path.is_file() else ""
        for uri in re.findall(r"^(?:deb\s+(?:\[[^\]]*\]\s+)?|URIs:\s*)(\S+)", text, re.M):
            if re.search(r"/debian/?$", uri):
                return uri.rstrip("/")
    return DEBIAN_MIRROR


#: What Debian's own slim images keep dpkg from installing (docs but their
#: copyright, manuals, translations), so the local base compares with them.
DPKG_SLIM = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
"""
#: And their apt setting: no downloaded packages or package caches left behind.
APT_CLEAN = """\
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
"""


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def slim(rootfs: Path) -> None:
    """Trim a debootstrapped tree the way Debian's slim images are trimmed."""
    (rootfs / "etc/dpkg/dpkg.cfg.d/slim").write_text(DPKG_SLIM)
    (rootfs / "etc/apt/apt.conf.d/docker-clean").write_text(APT_CLEAN)
    for tree in ("usr/share/man", "usr/share/groff", "usr/share/info", "usr/share/lintian"):
        shutil.rmtree(rootfs / tree, ignore_errors=True)
    for path in (rootfs / "usr/share/locale").glob("*"):
        if path.name != "locale.alias":
            _remove(path)
    for path in (rootfs / "usr/share/doc").glob("*/*"):
        if path.name != "copyright":
            _remove(path)
    for pattern in ("var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/lib/apt/lists/*"):
        for path in rootfs.glob(pattern):
            if path.is_file():
                path.unlink()


def debootstrap_tarball(suite: str, mirror: str) -> Path:
    """A minimal Debian ``suite`` root filesystem as a tar, built once under build/images/."""
    tarball = CACHE / f"debian-{suite}-minbase.tar"
    CACHE.mkdir(parents=True, exist_ok=True)
    # One debootstrap at a time when several builds start together.
    with (CACHE / ".debootstrap.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if tarball.exists():
            return tarball
        if shutil.which("debootstrap") is None or os.geteuid() != 0:
            raise SystemExit("--local-base needs root and debootstrap (apt-get install it)")
        with tempfile.TemporaryDirectory(dir=CACHE) as scratch:
            rootfs = Path(scratch) / "rootfs"
            print(f"debootstrap {suite} from {mirror}", flush=True)
            subprocess.run(
                ["debootstrap", "--variant=minbase", suite, str(rootfs), mirror],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            slim(rootfs)
            partial = Path(scratch) / "rootfs.tar"
            subprocess.run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True)
            partial.rename(tarball)
    return tarball


def local_base(engine: str, suite: str, mirror: str) -> str:
    """Import the debootstrapped base into ``engine`` (once) and return its name."""
    ref = f"localhost/modelserver-base:debian-{suite}"
    if not image_exists(engine, ref):
        tarball = debootstrap_tarball(suite, mirror)
        subprocess.run([engine, "import", str(tarball), ref], check=True, stdout=subprocess.DEVNULL)
    return ref


@dataclass(frozen=True)
class BuildOptions:
    engine: str
    #: extra arguments for '<engine> build'
    engine_args: tuple[str, ...] = ()
    #: a CA bundle pip trusts during the build (podman only)
    ca_bundle: Path | None = None


def build(target: str, tag: str, base: str | None, options: BuildOptions) -> Built:
    """One ``<engine> build --target <target>``; returns what it made and how long it took."""
    engine = options.engine
    cmd = [engine, "build", "-f", str(DOCKERFILE), "--target", target, "-t", tag]
    if IMAGES[target].needs:
        cmd += ["--build-arg", IMAGES[target].needs]  # the value comes from the environment
    cmd += options.engine_args
    if base:
        cmd += ["--build-arg", f"BASE_IMAGE={base}"]
    if options.ca_bundle:
        if engine != "podman":
            raise SystemExit("--ca-bundle needs podman (docker build has no build-time volumes)")
        cmd += ["-v", f"{options.ca_bundle.resolve()}:/etc/pip-ca.pem:ro"]
        cmd += ["--build-arg", "PIP_CERT=/etc/pip-ca.pem"]
    cmd.append(str(ROOT))
    print("+", " ".join(cmd), flush=True)
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    started = time.monotonic()
    subprocess.run(cmd, check=True, env=env)
    seconds = time.monotonic() - started
    return Built(target, tag, base or "(Dockerfile default)", seconds, image_size(engine, tag))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "images",
        nargs="*",
        metavar="IMAGE",
        help=f"any of {', '.join(IMAGES)}, or all (default: every CPU image)",
    )
    parser.add_argument("--engine", choices=["auto", "docker", "podman"], default="auto")
    parser.add_argument("--repo", default="modelserving", help="images are REPO/<runtime>")
    parser.add_argument("--tag", help="default: the runtime's version (-gpu appended for GPU)")
    parser.add_argument("--base-image", help="BASE_IMAGE for every image built")
    parser.add_argument("--gpu-base-image", default=GPU_BASE_IMAGE, help="BASE_IMAGE for -gpu")
    parser.add_argument(
        "--local-base",
        action="store_true",
        help="build on a debootstrapped Debian (no registry needed); overrides --base-image",
    )
    parser.add_argument("--debian-suite", default="bookworm")
    parser.add_argument("--debian-mirror", help="default: the Debian mirror apt uses here")
    parser.add_argument("--ca-bundle", type=Path, help="CA bundle pip trusts during the build")
    parser.add_argument(
        "--engine-arg",
        action="append",
        default=[],
        help="extra argument for '<engine> build' (repeatable), e.g. --engine-arg=--network=host",
    )
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = parser.parse_args(argv)
    if not args.images or "all" in args.images:
        wanted = [n for n, t in IMAGES.items() if "all" in args.images or not t.gpu]
        skipped = [n for n in wanted if IMAGES[n].needs and not os.environ.get(IMAGES[n].needs)]
        for name in skipped:
            print(f"skipping {name}: set {IMAGES[name].needs} to build it", file=sys.stderr)
        args.images = [n for n in wanted if n not in skipped]
    unknown = sorted(set(args.images) - set(IMAGES))
    if unknown:
        parser.error(f"unknown image(s) {', '.join(unknown)}; known: {', '.join(IMAGES)}")
    for name in args.images:
        if IMAGES[name].needs and not os.environ.get(IMAGES[name].needs):
            parser.error(f"{name} needs {IMAGES[name].needs} set (docker/Dockerfile)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    engine = detect_engine(args.engine)
    options = BuildOptions(engine, tuple(args.engine_arg), args.ca_bundle)
    base = args.base_image
    if args.local_base:
        base = local_base(engine, args.debian_suite, args.debian_mirror or apt_mirror())
    results = []
    for name in args.images:
        target = IMAGES[name]
        image_base = base or (args.gpu_base_image if target.gpu else None)
        results.append(build(name, target.tag(args.repo, args.tag), image_base, options))
    print(f"\n{'image':<44} {'size MB':>8} {'build s':>8}  base")
    for built in results:
        print(f"{built.tag:<44} {built.size_mb:>8.0f} {built.seconds:>8.0f}  {built.base}")
    if args.json:
        args.json.write_text(json.dumps([asdict(b) for b in results], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
