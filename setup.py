"""The compiled part of the engine (see src/condnet/engine/microkernel.c); everything else is in
pyproject.toml. The system C compiler builds it on install (`make setup` does)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "condnet.engine._microkernel",
            sources=["src/condnet/engine/microkernel.c"],
            # -O3 for the unrolled register blocks; -Wno-psabi: the vector types never cross a call
            extra_compile_args=["-O3", "-Wno-psabi"],
        )
    ]
)
