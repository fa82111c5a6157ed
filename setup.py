"""twinetd: an xinetd-compatible super-server built on Twisted."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
# One source for the version: twinetd/__init__.py.
VERSION = re.search(
    r'^__version__ = "([^"]+)"', (HERE / "twinetd/__init__.py").read_text(), re.M
).group(1)

setup(
    name="twinetd",
    version=VERSION,
    description="A super-server that reads xinetd configuration, built on Twisted",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    # twisted/plugins has no __init__.py (it is a namespace shared with
    # Twisted): named explicitly.
    packages=[*find_packages(include=["twinetd", "twinetd.*"]), "twisted.plugins"],
    package_data={"twinetd": ["py.typed"]},
    entry_points={"console_scripts": ["twinetd = twinetd.cli:main"]},
    data_files=[("share/man/man8", ["docs/twinetd.8"])],
    install_requires=[
        # Below the next major release: twinetd relies on a few private names
        # (twinetd/_twistedcompat.py pins each with a test).
        "twisted>=24.3,<27",
        "zope.interface>=6.0",
        "attrs>=23.1",
        # --metrics: the Prometheus text format (small, pure Python).
        "prometheus_client>=0.17",
    ],
    extras_require={
        # ssl: listeners (twinetd_listen): Twisted's TLS.
        "tls": [
            "pyOpenSSL>=21.0",
            "service_identity>=18.1",
        ],
        "test": [
            "pytest>=8",
            "pytest-twisted>=1.14",
            "pytest-timeout>=2.3",
            "hypothesis>=6.100",
        ],
        "dev": [
            "mypy>=1.10",
            "mypy-zope>=1.0",
            "pytest-xdist>=3.2",
            "ruff>=0.5",
        ],
    },
    classifiers=[
        "Framework :: Twisted",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3",
        "Topic :: System :: Networking",
    ],
)
