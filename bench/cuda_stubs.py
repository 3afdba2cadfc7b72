"""Stand-in CUDA libraries that let PyPI's Linux torch wheel import on a CPU-only machine.

PyPI's Linux x86_64 torch wheel is the CUDA build: `libtorch_cuda.so` (linked into
`torch._C`) needs libcudart, cuBLAS, cuDNN, NCCL, ... at load time, which come from about
3 GB of nvidia-* wheels. The benchmark runs on the CPU only and never calls them, so instead
of installing them this module builds one tiny shared library per missing soname, with the
soname, the symbol versions and the symbols torch's libraries ask for. Every function returns
100 (`cudaErrorNoDevice`), except the few that return an error message (`cudaGetErrorString`,
...), which return a fixed one. So `torch.cuda.is_available()` is False, a CUDA call raises
as on a machine without a GPU driver, and CPU code is untouched.

Needs `gcc`, `readelf` (binutils) and `ldconfig`. Standard library only.
"""

import collections
import re
import shutil
import subprocess
from pathlib import Path

NO_DEVICE = 100  # cudaErrorNoDevice: what every stand-in function returns
MESSAGE = "CUDA is not installed (stand-in library of bench/cuda_stubs.py)"
# Functions that return a message, not a status: torch calls them on error paths.
RETURNS_MESSAGE = {
    "cudaGetErrorName", "cudaGetErrorString", "cudnnGetErrorString", "cusparseGetErrorName",
    "cusparseGetErrorString", "cublasGetStatusName", "cublasGetStatusString",
    "cublasLtGetStatusName", "cublasLtGetStatusString", "ncclGetErrorString",
    "ncclGetLastError", "nvrtcGetErrorString", "cusolverGetErrorString",
}
TOOLS = ("gcc", "readelf")


class StubError(RuntimeError):
    """The stand-in libraries could not be built."""


def missing_tools() -> list[str]:
    """Tools this module needs that are not on PATH."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if ldconfig() is None:
        missing.append("ldconfig")
    return missing


def ldconfig() -> str | None:
    return shutil.which("ldconfig") or next(
        (p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if Path(p).exists()), None)


def _readelf(flag: str, path: Path) -> str:
    done = subprocess.run(["readelf", flag, "-W", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        raise StubError(f"readelf {flag} {path} failed: {done.stderr.strip()}")
    return done.stdout


def _dynamic_symbols(path: Path):
    """(type, binding, section, name, version) of each dynamic symbol of a library."""
    for line in _readelf("--dyn-syms", path).splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[0].rstrip(":").isdigit():
            name, _, version = fields[7].partition("@")
            yield fields[3], fields[4], fields[6], name, version.lstrip("@")


def _needed(path: Path) -> list[str]:
    return re.findall(r"\(NEEDED\).*\[(.+)\]", _readelf("-d", path))


def _version_needs(path: Path) -> dict[str, set[str]]:
    """Symbol versions a library requires, by the soname that must define them."""
    needs, owner = collections.defaultdict(set), None
    for line in _readelf("-V", path).splitlines():
        if found := re.search(r"File: (\S+)", line):
            owner = found.group(1)
        elif (found := re.search(r"Name: (\S+)", line)) and owner:
            needs[owner].add(found.group(1))
    return needs


def _system_libraries() -> dict[str, str]:
    """Soname -> path of the 64-bit libraries the dynamic loader knows."""
    listing = subprocess.run([ldconfig(), "-p"], capture_output=True, text=True).stdout
    return dict(re.findall(r"^\s+(\S+) \(libc6,x86-64[^)]*\) => (\S+)", listing, re.M))


def _stub_source(symbols: set[tuple[str, str]]) -> str:
    lines = []
    for name, kind in sorted(symbols):
        if kind == "OBJECT":
            lines.append(f"char {name}[64];")
        elif name in RETURNS_MESSAGE:
            lines.append(f'const char *{name}(void) {{ return "{MESSAGE}"; }}')
        else:
            lines.append(f"int {name}(void) {{ return {NO_DEVICE}; }}")
    return "\n".join(lines) + "\n"


def _global(names: set[tuple[str, str]]) -> str:
    return f"global: {' '.join(name + ';' for name, _ in sorted(names))}" if names else ""


def _build(soname: str, symbols: set, versions: dict[str, set], out: Path, build: Path):
    """Compile one stand-in library: unversioned `symbols` plus each version's symbols."""
    everything = set(symbols).union(*versions.values()) if versions else set(symbols)
    source = build / f"{soname}.c"
    source.write_text(_stub_source(everything))
    command = ["gcc", "-shared", "-fPIC", "-O0", "-w", f"-Wl,-soname,{soname}",
               "-o", str(out / soname), str(source)]
    if versions:
        script = build / f"{soname}.map"
        script.write_text("".join(
            f"{version} {{ {_global(names)} }};\n"
            for version, names in sorted(versions.items())))
        command.append(f"-Wl,--version-script={script}")
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise StubError(f"gcc failed building {soname}: {done.stderr.strip()[-2000:]}")


def make_stubs(torch_dir: Path, build: Path) -> list[str]:
    """Writes stand-ins for the libraries torch's own libraries need but neither torch nor the
    system provides into `torch_dir/lib` (on their RPATH, `$ORIGIN`). Returns their sonames;
    none when nothing is missing (a CPU-only torch, or the real CUDA wheels installed)."""
    lib = torch_dir / "lib"
    libraries = sorted(lib.glob("*.so*")) + sorted(torch_dir.glob("_C*.so"))
    if not libraries:
        raise StubError(f"no shared libraries under {lib}: is torch installed there?")
    ours = {path.name for path in libraries}
    system = _system_libraries()

    needed = {path: _needed(path) for path in libraries}
    missing = sorted({n for names in needed.values() for n in names
                      if n not in ours and n not in system})
    if not missing:
        return []

    # Who must define what: versioned references name their library; unversioned ones
    # that nothing loaded defines go to a missing library the referring library needs.
    version_owner, defined = {}, set()
    for path in libraries:
        for soname, versions in _version_needs(path).items():
            version_owner.update((v, soname) for v in versions)
    for soname in {n for names in needed.values() for n in names if n in system}:
        defined |= {s[3] for s in _dynamic_symbols(Path(system[soname])) if s[2] != "UND"}
    references = {}
    for path in libraries:
        references[path] = list(_dynamic_symbols(path))
        defined |= {s[3] for s in references[path] if s[2] != "UND"}

    plain = {soname: set() for soname in missing}
    versioned = {soname: {v: set() for v, o in version_owner.items() if o == soname}
                 for soname in missing}
    for path, symbols in references.items():
        mine = [n for n in needed[path] if n in plain]
        unversioned_home = next((n for n in mine if n not in version_owner.values()),
                                mine[0] if mine else None)
        for kind, binding, section, name, version in symbols:
            if section != "UND":
                continue
            owner = version_owner.get(version)
            if version and owner in plain:
                versioned[owner][version].add((name, kind))
            elif (not version and binding != "WEAK" and unversioned_home
                  and name not in defined and not name.startswith(("Py", "_Py"))):
                plain[unversioned_home].add((name, kind))

    build.mkdir(parents=True, exist_ok=True)
    for soname in missing:
        _build(soname, plain[soname], versioned[soname], lib, build)
    return missing
