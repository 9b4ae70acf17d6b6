try:
    from cmake_build import cmake_build  # noqa: F401  (session fixture: one C++ build per test run)
except ImportError:
    from tests.cmake_build import cmake_build  # noqa: F401
