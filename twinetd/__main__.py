# -*- test-case-name: tests.unit.test_cli -*-
"""
C{python -m twinetd}: the C{twinetd} command (L{twinetd.cli}).
"""

from twinetd.cli import main

main()
