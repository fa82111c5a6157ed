"""Reports its credentials, umask, niceness, limits, session and open
descriptors as key=value lines, then exits."""

import os
import resource

mask = os.umask(0)
lines = [
    f"uid={os.getuid()}",
    f"euid={os.geteuid()}",
    f"gid={os.getgid()}",
    f"groups={','.join(str(g) for g in sorted(os.getgroups()))}",
    f"umask={mask:04o}",
    f"nice={os.nice(0)}",
    f"nofile={resource.getrlimit(resource.RLIMIT_NOFILE)[0]}",
    f"pid={os.getpid()}",
    f"sid={os.getsid(0)}",
    f"pgid={os.getpgid(0)}",
    f"fds={','.join(sorted(os.listdir('/proc/self/fd'), key=int))}",
]
os.write(1, ("\n".join(lines) + "\n").encode())
