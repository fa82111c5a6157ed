"""
Writes its umask (octal, four digits) and exits.
"""

import os

mask = os.umask(0)
print(f"{mask:04o}", flush=True)
