"""twinetd: an xinetd-compatible super-server built on Twisted."""

from setuptools import setup

setup(
    name="twinetd",
    version="0.1.0.dev0",
    description="A super-server that reads xinetd configuration, built on Twisted",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=[
        "twinetd",
        "twinetd.config",
        "twinetd.policy",
        "twinetd.logs",
        "twinetd.modes",
        "twinetd.listeners",
        "twisted.plugins",
    ],
    package_data={"twinetd": ["py.typed"]},
    install_requires=[
        "twisted>=24.3",
        "zope.interface>=6.0",
        "attrs>=23.1",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-twisted>=1.14",
            "pytest-timeout>=2.3",
            "hypothesis>=6.100",
        ],
        "dev": [
            "mypy>=1.10",
            "mypy-zope>=1.0",
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
