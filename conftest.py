"""Root conftest: its presence puts the repository root on ``sys.path`` (pytest's prepend import
mode), so test modules can ``from tests.vectors import load_vector`` — the same module name mypy
resolves with ``explicit_package_bases``."""
