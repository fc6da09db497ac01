"""The compiled part of the engine (src/condnet/engine/microkernel.c, int8_dots.c, int8_product.c and
shared_product.c); everything else is in pyproject.toml. The system C compiler builds it on install
(`make setup` does)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "condnet.engine._microkernel",
            sources=[
                "src/condnet/engine/microkernel.c",
                "src/condnet/engine/int8_dots.c",
                "src/condnet/engine/int8_product.c",
                "src/condnet/engine/shared_product.c",
            ],
            # -O3 for the unrolled register blocks; -Wno-psabi: the vector types never cross a call;
            # -pthread: shared_product.c's helper threads
            extra_compile_args=["-O3", "-Wno-psabi", "-pthread"],
            extra_link_args=["-pthread"],
        )
    ]
)
