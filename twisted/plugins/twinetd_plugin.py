"""
twistd plugin for twinetd: C{twistd -n twinetd -c etc/}.

This file imports nothing from twinetd, so that scanning plugins stays cheap and
a broken twinetd cannot break C{twistd --help}.
"""

from twisted.application.service import ServiceMaker

twinetd = ServiceMaker(
    "twinetd",
    "twinetd.tap",
    "An xinetd-compatible super-server: spawns a program per connection.",
    "twinetd",
)
