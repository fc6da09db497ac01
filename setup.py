"""The compiled part of the engine (src/condnet/engine/microkernel.c and int8_dots.c); everything else is in
pyproject.toml. The system C compiler builds it on install (`make setup` does)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "condnet.engine._microkernel",
            sources=["src/condnet/engine/microkernel.c", "src/condnet/engine/int8_dots.c"],
            # -O3 for the unrolled register blocks; -Wno-psabi: the vector types never cross a call
            extra_compile_args=["-O3", "-Wno-psabi"],
        )
    ]
)
