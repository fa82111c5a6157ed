"""Writes its environment as JSON (plus umask, cwd, argv and the
descriptors that are sockets) and exits."""

import json
import os
import sys

umask = os.umask(0)
sys.stdout.write(
    json.dumps(
        {
            "env": dict(os.environ),
            "umask": umask,
            "cwd": os.getcwd(),
            "argv": sys.argv,
            "sockets": sorted(
                int(fd)
                for fd in os.listdir("/proc/self/fd")
                if os.path.exists(f"/proc/self/fd/{fd}")
                and os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
            ),
        }
    )
)
