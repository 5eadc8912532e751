"""setup.py: the build of the colbert_c package (metadata in pyproject.toml).

`pip install .` runs this through setuptools' PEP 517 backend:
  1. `make pylib` builds build-py/libcolbert.so from src/ with portable flags
     (PYARCH: -march=x86-64-v2 -mtune=generic; the SIMD kernels are picked at
     run time), linked against the system's OpenBLAS, jansson, utf8proc,
     libgomp and cairo;
  2. setuptools compiles the extension colbert_c._native (python/colbert_c/
     _native.c, stable ABI) against src/ and links it to libcolbert.so with
     rpath $ORIGIN;
  3. libcolbert.so is copied beside it, into the package.
COLBERT_BUILD_JOBS sets make's -j (default: up to 4).
"""
import os
import re
import shutil
import subprocess

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))
PYBUILD = "build-py"


def version():
    with open(os.path.join(ROOT, "cli", "cli.h"), encoding="utf-8") as f:
        return re.search(r'#define COLBERT_VERSION "([^"]+)"', f.read()).group(1)


class BuildExt(build_ext):
    def run(self):
        jobs = os.environ.get("COLBERT_BUILD_JOBS", str(min(os.cpu_count() or 1, 4)))
        # --no-print-directory: under another make (make test runs pip in a
        # sub-make) make -C would print "Entering directory" into the flags
        subprocess.check_call(["make", "--no-print-directory", "-C", ROOT, f"-j{jobs}", "pylib",
                               f"PYBUILD={PYBUILD}"])
        flags = subprocess.check_output(["make", "-s", "--no-print-directory", "-C", ROOT, "print-cflags"],
                                        text=True).split()
        for ext in self.extensions:
            ext.extra_compile_args = flags + ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                              "-Wno-missing-field-initializers"]
        self.force = True   # one file; it must follow src/*.h, which setuptools does not track
        super().run()
        dest = os.path.join(ROOT, "python", "colbert_c") if self.inplace else \
            os.path.join(self.build_lib, "colbert_c")
        os.makedirs(dest, exist_ok=True)
        shutil.copy2(os.path.join(ROOT, PYBUILD, "libcolbert.so"), os.path.join(dest, "libcolbert.so"))


setup(
    version=version(),
    ext_modules=[Extension(
        "colbert_c._native",
        sources=["python/colbert_c/_native.c"],
        include_dirs=["src"],
        library_dirs=[PYBUILD],
        libraries=["colbert"],
        extra_link_args=["-Wl,-rpath,$ORIGIN"],
        py_limited_api=True,
    )],
    cmdclass={"build_ext": BuildExt},
    options={"build": {"build_base": os.path.join(PYBUILD, "setuptools")},
             "bdist_wheel": {"py_limited_api": "cp38"}},
)
