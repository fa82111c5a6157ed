#!/usr/bin/env python3
"""
Set-up and everyday commands for a checkout; needs only Python 3.10+.

    python3 dev.py serve [twistd twinetd options]   run the daemon on etc/
                                                    (its TLS key made at first)
    python3 dev.py test                             lint, types, whole test suite
    python3 dev.py test [pytest args]               only pytest, with those args

The first call makes a virtual environment in .venv and installs twinetd's
dependencies into it (again whenever setup.py changes).  The checkout itself
is put on PYTHONPATH, so edits take effect without reinstalling.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / "twinetd-installed"


def ensureVenv() -> None:
    wanted = hashlib.sha256((ROOT / "setup.py").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print("dev.py: creating .venv", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    print("dev.py: installing twinetd, its test tools and TLS into .venv", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "-q", "--upgrade", "pip"], check=True)
    # The tls extra too: the tests serve TLS, and so does etc/'s stamp-tls.
    subprocess.run([*pip, "install", "-q", f"{ROOT}[test,dev,tls]"], check=True)
    STAMP.write_text(wanted)


def environment() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    return env


def run(argv: list[str]) -> int:
    print("+ " + " ".join(argv), flush=True)
    done = subprocess.run(argv, cwd=ROOT, env=environment(), stdin=subprocess.DEVNULL)
    return done.returncode


def tlsCertificate() -> None:
    """
    etc/stamp-tls's key and self-signed certificate (for localhost), made
    once into etc/tls.d/ (git ignores it; a name with a dot, which the
    configuration folder skips as xinetd does), by the venv's Python (the tls
    extra brings cryptography).
    """
    folder = ROOT / "etc" / "tls.d"
    key, certificate = folder / "stamp.key", folder / "stamp.crt"
    if key.exists() and certificate.exists():
        return
    folder.mkdir(mode=0o700, exist_ok=True)
    argv = [str(BIN / "python"), __file__, "certificate", str(key), str(certificate)]
    if subprocess.run(argv, stdin=subprocess.DEVNULL).returncode == 0:
        print(f"dev.py: made {key.relative_to(ROOT)} and its certificate", flush=True)
    else:
        print("dev.py: no TLS certificate: stamp-tls will not listen", flush=True)


def makeCertificate(keyPath: str, certificatePath: str) -> int:
    """
    A P-256 key and a self-signed certificate for localhost, a year long.
    """
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    secret = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(keyPath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
    Path(certificatePath).write_bytes(
        certificate.public_bytes(serialization.Encoding.PEM)
    )
    return 0


def serve(args: list[str]) -> int:
    tlsCertificate()
    argv = [str(BIN / "twistd"), "-n", "--pidfile=", "twinetd", "-c", "etc/", *args]
    print("+ " + " ".join(argv), flush=True)
    os.chdir(ROOT)
    os.execve(argv[0], argv, environment())


def test(args: list[str]) -> int:
    py = str(BIN / "python")
    pytest = [py, "-m", "pytest"]
    if args:
        return run([*pytest, *args])
    sources = ["twinetd", "tests", "twisted", "bench", "dev.py"]
    steps = [
        [py, "-m", "ruff", "check", *sources],
        [py, "-m", "ruff", "format", "--check", *sources],
        [py, "-m", "mypy"],
        # Four workers on any machine: most of a test's time is waiting
        # (children, timers, sockets), not CPU.
        [*pytest, "-p", "no:cacheprovider", "-n", "4", "--dist", "worksteal", "tests"],
    ]
    failed = [step for step in steps if run(step) != 0]
    for step in failed:
        print("FAILED: " + " ".join(step[2:4]), flush=True)
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["certificate"] and len(argv) == 3:
        # Run by tlsCertificate with the venv's Python.
        return makeCertificate(argv[1], argv[2])
    if not argv or argv[0] not in ("serve", "test"):
        print(__doc__.strip())
        return 2
    ensureVenv()
    return {"serve": serve, "test": test}[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
